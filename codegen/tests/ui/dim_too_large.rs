#[kiln_codegen::model(arch = "bert", path = "../tests/fixtures/all-MiniLM-L6-v2-Q8_0.gguf", dim = 1024)]
pub struct Model;

fn main() {
    let _ = Model;
}
