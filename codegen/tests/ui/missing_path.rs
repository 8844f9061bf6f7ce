#[kiln_codegen::model(arch = "bert")]
pub struct Model;

fn main() {
    let _ = Model;
}
