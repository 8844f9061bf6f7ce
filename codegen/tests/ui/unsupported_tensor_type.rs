#[kiln_codegen::model(arch = "bert", path = "tests/ui/bert_q4_k.gguf")]
pub struct Model;

fn main() {
    let _ = Model;
}
