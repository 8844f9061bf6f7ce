//! Fuzzes the GGUF parser: any bytes must give a file or a typed error,
//! never a panic, and an opened file must survive every accessor.

#![no_main]

use kiln_runtime::gguf::GgufFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(f) = GgufFile::from_vec(data.to_vec(), "fuzz.gguf") else {
        return;
    };
    let m = f.metadata();
    for (key, value) in m.iter() {
        let _ = m.get_u32(key);
        let _ = m.get_f32(key);
        let _ = m.get_str(key);
        if let Some(a) = value.as_array() {
            for item in a.iter() {
                std::hint::black_box(item);
            }
            if let Ok(strs) = m.get_str_array(key) {
                std::hint::black_box(strs.count());
            }
            let _ = m.get_f32_array(key);
            let _ = m.get_i32_array(key);
        }
    }
    for t in f.tensors() {
        std::hint::black_box(f.tensor_bytes(t));
        let _ = f.tensor_f32(&t.name);
        let _ = f.tensor_q8_0(&t.name);
        // Bound the work per input: dequantize small tensors only.
        if t.n_bytes <= 1 << 16 {
            let _ = f.dequantize(&t.name);
        }
    }
});
