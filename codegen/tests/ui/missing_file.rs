#[kiln_codegen::model(arch = "bert", path = "tests/ui/no_such_model.gguf")]
pub struct Model;

fn main() {
    let _ = Model;
}
