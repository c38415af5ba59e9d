//! Splits a document into sentences for next-sentence prediction: the text
//! is joined into one line (corpora wrap lines anywhere), then cut after
//! `.`, `!` or `?` (and any closing quotes or brackets) followed by
//! whitespace and a capital letter, a digit or an opening quote or bracket.
//! A heuristic, as BERT's own data (one sentence per line) was made with
//! one; abbreviations like "e.g. The" are cut too.
pub fn split(document: &str) -> Vec<String> {
    let text = document.split_whitespace().collect::<Vec<_>>().join(" ");
    let chars: Vec<char> = text.chars().collect();
    let mut sentences = Vec::new();
    let mut start = 0;
    for i in 0..chars.len() {
        if !matches!(chars[i], '.' | '!' | '?') {
            continue;
        }
        let mut end = i;
        while chars.get(end + 1).is_some_and(|c| matches!(c, ')' | ']' | '"' | '\'')) {
            end += 1;
        }
        let ends = chars.get(end + 1) == Some(&' ')
            && chars.get(end + 2).is_some_and(|c| c.is_uppercase() || c.is_ascii_digit() || matches!(c, '"' | '\'' | '(' | '['));
        if ends && end >= start {
            sentences.push(chars[start..=end].iter().collect::<String>());
            start = end + 2;
        }
    }
    if start < chars.len() {
        sentences.push(chars[start..].iter().collect());
    }
    sentences
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn cuts_after_sentence_ends_across_wrapped_lines() {
        let doc = "Assert statements are convenient.\nThe simple form is\nequivalent to this! Is it? (Yes.) 3 cases remain. x.y is a name";
        assert_eq!(
            split(doc),
            ["Assert statements are convenient.", "The simple form is equivalent to this!", "Is it?", "(Yes.)", "3 cases remain. x.y is a name"]
        );
        assert!(split("   ").is_empty());
    }
}
