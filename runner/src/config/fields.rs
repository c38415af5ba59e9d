//! The keys a section accepts, read from its serde derive: every field,
//! the optional ones too, which a serialised section leaves out when unset.
//! So no list of keys is kept by hand beside the structs in `schema.rs`.
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};

/// The field names of the struct `T` as it is deserialised.
pub fn of<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    // The derive hands its field list to `deserialize_struct`; asking for
    // it and stopping there is all this deserializer does.
    let _ = T::deserialize(FieldNames(&mut fields));
    fields
}

struct FieldNames<'a>(&'a mut &'static [&'static str]);

impl<'de> Deserializer<'de> for FieldNames<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(self, _: &'static str, fields: &'static [&'static str], _: V) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(de::Error::custom("only the field names were asked for"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{DataSection, TrainSection};

    #[test]
    fn lists_every_field_including_the_optional_and_the_skipped_when_off() {
        let data = super::of::<DataSection>();
        let train = super::of::<TrainSection>();
        for key in ["corpus", "seq_len", "train", "eval", "format", "text_columns", "label_column", "nsp"] {
            assert!(data.contains(&key), "{key} missing from {data:?}");
        }
        for key in ["steps", "lr", "epochs", "warmup_fraction", "budget", "tf32"] {
            assert!(train.contains(&key), "{key} missing from {train:?}");
        }
        assert!(!train.contains(&"corpus"));
    }
}
