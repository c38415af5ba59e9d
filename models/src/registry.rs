//! The plugins bertlab knows, by name. Adding an architecture is a file in
//! `zoo/` and one line here.
use crate::plugin::Plugin;
use crate::zoo;

static PLUGINS: &[&dyn Plugin] = &[&zoo::bert::Bert, &zoo::bert_preln::BERT_PRELN, &zoo::crammed_bert::CRAMMED_BERT];

pub fn all() -> &'static [&'static dyn Plugin] {
    PLUGINS
}

pub fn find(name: &str) -> Option<&'static dyn Plugin> {
    PLUGINS.iter().copied().find(|p| p.name() == name)
}

pub fn names() -> Vec<&'static str> {
    PLUGINS.iter().map(|p| p.name()).collect()
}
