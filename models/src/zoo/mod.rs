//! One module per architecture, and what they share: the encoder knobs,
//! the layers every model builds alike ([`layers`]) and the pre-LN encoder.
pub mod bert;
pub mod bert_preln;
pub mod crammed_bert;
pub mod encoder_knobs;
pub mod layers;
pub mod prenorm;
