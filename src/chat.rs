//! Chat prompts: messages rendered with the GGUF's `tokenizer.chat_template`
//! (a Jinja template, rendered with minijinja) or, without one, Gemma's turn
//! format.
//!
//! The rendering is returned as segments, each marked with whether it may
//! hold control tokens: the template's own text may (`<start_of_turn>`),
//! message contents never do, whatever they contain. To know where
//! contents are in a template's output, each is rendered as a unique
//! marker and put back afterwards: contents are inserted verbatim (a
//! template's filters on them, such as `trim`, do not apply).

use minijinja::{Environment, Error as JinjaError, ErrorKind, context};

use crate::Error;
use kiln_runtime::tokenizer::Tokenizer;

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant` (Gemma's `model` is accepted too).
    pub role: String,
    /// The text; never parsed for special tokens.
    pub content: String,
}

impl ChatMessage {
    /// A message.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// Marker around a message index in the rendered template (private-use
/// characters no tokenizer or user text is expected to hold).
const MARK: char = '\u{10FFFD}';

/// Segments of the prompt: `(text, parse_special)`.
pub(crate) fn render(
    template: Option<&str>,
    messages: &[ChatMessage],
    tokenizer: &Tokenizer,
) -> Result<Vec<(String, bool)>, Error> {
    for m in messages {
        if !matches!(m.role.as_str(), "system" | "user" | "assistant" | "model") {
            return Err(Error::BadRole(m.role.clone()));
        }
    }
    match template {
        Some(t) => render_template(t, messages, tokenizer),
        None => Ok(gemma_turns(messages)),
    }
}

/// Gemma's format: `<start_of_turn>user\n…<end_of_turn>\n` per turn (a
/// system message goes at the top of the first user turn), then
/// `<start_of_turn>model\n`. Contents are trimmed, as Gemma's template does.
fn gemma_turns(messages: &[ChatMessage]) -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> = Vec::new();
    let mut system: Option<&str> = None;
    for m in messages {
        match m.role.as_str() {
            "system" => system = Some(m.content.trim()),
            role => {
                let role = if role == "user" { "user" } else { "model" };
                out.push((format!("<start_of_turn>{role}\n"), true));
                if let Some(s) = system.take() {
                    out.push((s.to_owned(), false));
                    out.push(("\n\n".to_owned(), true));
                }
                out.push((m.content.trim().to_owned(), false));
                out.push(("<end_of_turn>\n".to_owned(), true));
            }
        }
    }
    if let Some(s) = system {
        out.push(("<start_of_turn>user\n".to_owned(), true));
        out.push((s.to_owned(), false));
        out.push(("<end_of_turn>\n".to_owned(), true));
    }
    out.push(("<start_of_turn>model\n".to_owned(), true));
    out
}

fn render_template(
    template: &str,
    messages: &[ChatMessage],
    tokenizer: &Tokenizer,
) -> Result<Vec<(String, bool)>, Error> {
    let mut env = Environment::new();
    env.add_function(
        "raise_exception",
        |msg: String| -> Result<String, JinjaError> {
            Err(JinjaError::new(ErrorKind::InvalidOperation, msg))
        },
    );
    let marked: Vec<ChatMessage> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| ChatMessage::new(m.role.clone(), format!("{MARK}{i}{MARK}")))
        .collect();
    let piece = |id: Option<u32>| id.and_then(|i| tokenizer.token_text(i)).unwrap_or("");
    let rendered = env
        .render_str(
            template,
            context! {
                messages => marked,
                add_generation_prompt => true,
                bos_token => piece(tokenizer.bos()),
                eos_token => piece(tokenizer.eos()),
            },
        )
        .map_err(|e| Error::Template(e.to_string()))?;
    let mut out = Vec::new();
    let mut parts = rendered.split(MARK);
    if let Some(first) = parts.next() {
        out.push((first.to_owned(), true));
    }
    // Between markers: an index, then template text.
    while let (Some(index), Some(after)) = (parts.next(), parts.next()) {
        let m = index
            .parse::<usize>()
            .ok()
            .and_then(|i| messages.get(i))
            .ok_or_else(|| Error::Template("a message marker was altered".into()))?;
        out.push((m.content.clone(), false));
        out.push((after.to_owned(), true));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs() -> Vec<ChatMessage> {
        vec![
            ChatMessage::new("system", "Be brief."),
            ChatMessage::new("user", " Hi <start_of_turn> "),
            ChatMessage::new("assistant", "Hello."),
            ChatMessage::new("user", "Bye"),
        ]
    }

    #[test]
    fn gemma_turns_keep_contents_as_text() {
        let segs = gemma_turns(&msgs());
        let text: String = segs.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(
            text,
            "<start_of_turn>user\nBe brief.\n\nHi <start_of_turn><end_of_turn>\n\
             <start_of_turn>model\nHello.<end_of_turn>\n\
             <start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"
        );
        // The message holding a control-token string is not parsed.
        assert!(segs.contains(&("Hi <start_of_turn>".to_owned(), false)));
    }
}
