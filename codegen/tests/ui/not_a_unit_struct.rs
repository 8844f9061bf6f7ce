#[kiln_codegen::model(arch = "bert", path = "../tests/fixtures/all-MiniLM-L6-v2-Q8_0.gguf")]
pub struct Model {
    field: u32,
}

fn main() {
    let _ = Model { field: 1 }.field;
}
