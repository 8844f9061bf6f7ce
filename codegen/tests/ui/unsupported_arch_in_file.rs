#[kiln_codegen::model(arch = "bert", path = "tests/ui/llama.gguf")]
pub struct Model;

fn main() {
    let _ = Model;
}
