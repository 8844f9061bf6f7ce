// BERT models have no task prompts.
#[kiln_codegen::model(arch = "bert", path = "../tests/fixtures/all-MiniLM-L6-v2-Q8_0.gguf", task = "query")]
pub struct Model;

fn main() {
    let _ = Model;
}
