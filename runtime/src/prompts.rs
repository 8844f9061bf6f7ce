//! Task prompts that models were trained with, by architecture.
//!
//! GGUF files do not carry them, so kiln knows the prompts of the models it
//! supports (EmbeddingGemma's come from its sentence-transformers config).

/// `(name, prompt)` pairs of EmbeddingGemma.
const GEMMA_EMBEDDING: &[(&str, &str)] = &[
    ("query", "task: search result | query: "),
    ("document", "title: none | text: "),
    ("BitextMining", "task: search result | query: "),
    ("Clustering", "task: clustering | query: "),
    ("Classification", "task: classification | query: "),
    ("InstructionRetrieval", "task: code retrieval | query: "),
    ("MultilabelClassification", "task: classification | query: "),
    ("PairClassification", "task: sentence similarity | query: "),
    ("Reranking", "task: search result | query: "),
    ("Retrieval", "task: search result | query: "),
    ("Retrieval-query", "task: search result | query: "),
    ("Retrieval-document", "title: none | text: "),
    ("STS", "task: sentence similarity | query: "),
    ("Summarization", "task: summarization | query: "),
];

fn table(arch: &str) -> &'static [(&'static str, &'static str)] {
    match arch {
        "gemma-embedding" => GEMMA_EMBEDDING,
        _ => &[],
    }
}

/// The prompt named `name` for architecture `arch` (names compare
/// case-insensitively).
pub fn lookup(arch: &str, name: &str) -> Option<&'static str> {
    table(arch)
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, p)| *p)
}

/// The prompt names known for `arch`.
pub fn names(arch: &str) -> Vec<&'static str> {
    table(arch).iter().map(|(n, _)| *n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemma_prompts() {
        assert_eq!(
            lookup("gemma-embedding", "query"),
            Some("task: search result | query: ")
        );
        assert_eq!(
            lookup("gemma-embedding", "Document"),
            Some("title: none | text: ")
        );
        assert_eq!(lookup("bert", "query"), None);
        assert!(names("bert").is_empty());
    }
}
