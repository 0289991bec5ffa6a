//! Kong's `error_template_html`, `error_template_json`, `error_template_xml` and
//! `error_template_plain`: an operator's own error bodies in place of Kong's.
//!
//! Kong renders them as Lua's `string.format(template, message, request_id)`: the first
//! `%s` takes the message, the second the request id, `%%` is a percent sign, and anything
//! else after a `%` fails at render time. gangway parses a template once, at startup, and
//! refuses one Kong would fail on. The message and the request id are escaped for the
//! format, as in gangway's own templates (see the module above).

use std::sync::OnceLock;

use super::ErrorFormat;

/// A parsed template: text with the message and the request id in place of its `%s`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorTemplate {
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(Vec<u8>),
    Message,
    RequestId,
}

impl ErrorTemplate {
    /// Parses `text` as `string.format(text, message, request_id)` reads it.
    pub fn parse(text: &[u8]) -> Result<ErrorTemplate, String> {
        let mut pieces = Vec::new();
        let mut text_piece = Vec::new();
        let mut placeholders = 0;
        let mut bytes = text.iter().copied();
        while let Some(b) = bytes.next() {
            if b != b'%' {
                text_piece.push(b);
                continue;
            }
            match bytes.next() {
                Some(b'%') => text_piece.push(b'%'),
                Some(b's') => {
                    placeholders += 1;
                    if placeholders > 2 {
                        return Err("holds more than two %s placeholders (the message and \
                                    the request id)"
                            .to_owned());
                    }
                    pieces.push(Piece::Text(std::mem::take(&mut text_piece)));
                    pieces.push(if placeholders == 1 {
                        Piece::Message
                    } else {
                        Piece::RequestId
                    });
                }
                other => {
                    let found = other.map_or(String::new(), |c| char::from(c).to_string());
                    return Err(format!(
                        "holds '%{found}': only %s (the message, then the request id) and %% \
                         (a percent sign) may follow a '%'"
                    ));
                }
            }
        }
        pieces.push(Piece::Text(text_piece));
        pieces.retain(|p| !matches!(p, Piece::Text(t) if t.is_empty()));
        Ok(ErrorTemplate { pieces })
    }

    /// Appends the body: the text, with `message` writing where the first `%s` was and
    /// `request_id` where the second was.
    pub(super) fn render(
        &self,
        out: &mut Vec<u8>,
        message: impl Fn(&mut Vec<u8>),
        request_id: impl Fn(&mut Vec<u8>),
    ) {
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.extend_from_slice(text),
                Piece::Message => message(out),
                Piece::RequestId => request_id(out),
            }
        }
    }
}

/// The operator's templates, one per format; `None` keeps Kong's.
#[derive(Debug, Clone, Default)]
pub struct ErrorTemplates {
    /// `error_template_json`.
    pub json: Option<ErrorTemplate>,
    /// `error_template_html`.
    pub html: Option<ErrorTemplate>,
    /// `error_template_xml`.
    pub xml: Option<ErrorTemplate>,
    /// `error_template_plain`.
    pub plain: Option<ErrorTemplate>,
}

static TEMPLATES: OnceLock<ErrorTemplates> = OnceLock::new();

/// Makes `templates` the process's error bodies (once, at startup: like Kong's
/// configuration they do not change on a reload). False when they were already set.
pub fn use_templates(templates: ErrorTemplates) -> bool {
    TEMPLATES.set(templates).is_ok()
}

/// The operator's template for `format`, if any.
pub(super) fn template(format: ErrorFormat) -> Option<&'static ErrorTemplate> {
    let templates = TEMPLATES.get()?;
    match format {
        ErrorFormat::Json => templates.json.as_ref(),
        ErrorFormat::Html => templates.html.as_ref(),
        ErrorFormat::Xml => templates.xml.as_ref(),
        ErrorFormat::Plain => templates.plain.as_ref(),
        ErrorFormat::Grpc | ErrorFormat::MessageJson => None,
    }
}
