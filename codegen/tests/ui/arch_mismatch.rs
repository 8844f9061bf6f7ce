// all-MiniLM-L6-v2 is a BERT model, not EmbeddingGemma.
#[kiln_codegen::model(arch = "gemma", path = "../tests/fixtures/all-MiniLM-L6-v2-Q8_0.gguf")]
pub struct Model;

fn main() {
    let _ = Model;
}
