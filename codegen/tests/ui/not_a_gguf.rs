#[kiln_codegen::model(arch = "bert", path = "tests/ui/not_gguf.txt")]
pub struct Model;

fn main() {
    let _ = Model;
}
