//! Where keys sit in a TOML text: the line of a dotted key path, and the key path at a byte
//! offset. Used to name the file, line and key of every error in a settings file.

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// 1-based line of a byte offset.
pub fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The line of the value at a dotted key path such as `search.budget` or
/// `space.clusters.1.layers.0` (numbers index arrays); `None` when the key is absent.
pub fn line_of_key(text: &str, path: &str) -> Option<usize> {
    let root = DeTable::parse(text).ok()?;
    let mut table = root.get_ref();
    let mut value: Option<&Spanned<DeValue>> = None;
    for part in path.split('.') {
        let next = match value.map(|v| v.get_ref()) {
            None => table.iter().find(|(k, _)| k.get_ref() == part).map(|(_, v)| v),
            Some(DeValue::Table(t)) => t.iter().find(|(k, _)| k.get_ref() == part).map(|(_, v)| v),
            Some(DeValue::Array(a)) => part.parse::<usize>().ok().and_then(|i| a.get(i)),
            Some(_) => None,
        }?;
        if let DeValue::Table(t) = next.get_ref() {
            table = t;
        }
        value = Some(next);
    }
    value.map(|v| line_of(text, v.span().start))
}

/// The dotted path of the innermost key whose value contains `offset`, if any.
pub fn key_at(text: &str, offset: usize) -> Option<String> {
    let root = DeTable::parse(text).ok()?;
    let mut path = Vec::new();
    walk_table(root.get_ref(), offset, &mut path).then(|| path.join("."))
}

fn walk_table(table: &DeTable, offset: usize, path: &mut Vec<String>) -> bool {
    for (key, value) in table.iter() {
        path.push(key.get_ref().to_string());
        if key.span().contains(&offset) || walk_value(value, offset, path) {
            return true;
        }
        path.pop();
    }
    false
}

/// Tables and arrays are searched child by child (a `[section]`'s own span need not cover
/// its keys); a scalar matches when its span holds the offset.
fn walk_value(value: &Spanned<DeValue>, offset: usize, path: &mut Vec<String>) -> bool {
    match value.get_ref() {
        DeValue::Table(t) => walk_table(t, offset, path),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(i.to_string());
                if walk_value(item, offset, path) {
                    return true;
                }
                path.pop();
            }
            value.span().contains(&offset)
        }
        _ => value.span().contains(&offset),
    }
}

/// A TOML parse or type error as a [`SpecError`](crate::spec::SpecError) at the offending
/// line, naming the key.
pub fn toml_error(text: &str, path: &std::path::Path, error: &toml::de::Error) -> crate::spec::SpecError {
    let offset = error.span().map(|s| s.start);
    let message = error.message().trim().to_string();
    crate::spec::SpecError {
        file: path.display().to_string(),
        line: offset.map(|o| line_of(text, o)),
        message: match offset.and_then(|o| key_at(text, o)) {
            Some(k) => format!("`{k}`: {message}"),
            None => message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "[search]\nbudget = 4\n\n[[space.clusters]]\nname = \"a\"\nlayers = [\"x\", \"y\"]\n";

    #[test]
    fn finds_lines_of_keys_and_array_items() {
        assert_eq!(line_of_key(TEXT, "search.budget"), Some(2));
        assert_eq!(line_of_key(TEXT, "space.clusters.0.layers.1"), Some(6));
        assert_eq!(line_of_key(TEXT, "search.seed"), None);
    }

    #[test]
    fn names_the_key_at_an_offset() {
        let offset = TEXT.find('4').unwrap();
        assert_eq!(key_at(TEXT, offset).as_deref(), Some("search.budget"));
        let offset = TEXT.find("\"y\"").unwrap();
        assert_eq!(key_at(TEXT, offset).as_deref(), Some("space.clusters.0.layers.1"));
    }
}
