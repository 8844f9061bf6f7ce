#[kiln_codegen::model(arch = "gpt2", path = "../tests/fixtures/all-MiniLM-L6-v2-Q8_0.gguf")]
pub struct Model;

fn main() {
    let _ = Model;
}
