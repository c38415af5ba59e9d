//! Reads the named tensors of a file that PyTorch's `torch.save` wrote
//! (`pytorch_model.bin`, as `save_pretrained(safe_serialization=False)`
//! wrote it and as many published checkpoints, the Turc miniatures among
//! them, still are): a zip archive whose `<name>/data.pkl` pickles the state
//! dict and whose `<name>/data/<key>` records hold the storages' bytes.
//!
//! Why not libtorch's own unpickler (`torch::pickle_load`): it turns every
//! `collections.OrderedDict` into None, because it expects one only as a
//! tensor's backward hooks, and a state dict *is* an OrderedDict, so it
//! cannot read one. This module interprets the small part of the pickle
//! protocol that `torch.save` emits and lets libtorch build the tensors
//! from the storage bytes. Nothing is executed: only the globals a state
//! dict needs are known, and any other is an error naming it, so a
//! malicious pickle can do no more than fail.
use anyhow::{anyhow, bail, Context, Result};
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use tch::{Kind, Tensor};

/// Every tensor of the state dict in `file`, by name, contiguous, on the CPU.
pub fn read(file: &Path) -> Result<Vec<(String, Tensor)>> {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(file)?).context("not a zip archive (a torch.save file from before PyTorch 1.6 is not read)")?;
    let pickle_name = archive.file_names().find(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1).map(str::to_string).ok_or_else(|| anyhow!("no data.pkl in the archive"))?;
    let prefix = pickle_name.trim_end_matches("data.pkl").to_string();
    // Older archives have no byteorder record: they are little endian.
    if let Ok(order) = record(&mut archive, &format!("{prefix}byteorder")) {
        let order = String::from_utf8_lossy(&order);
        if order.trim() != "little" {
            bail!("its tensors are {} endian; only little endian is read", order.trim());
        }
    }
    let pickle = record(&mut archive, &pickle_name)?;
    let Value::Dict(entries) = unpickle(&pickle).with_context(|| format!("reading {pickle_name}"))? else { bail!("{pickle_name} does not hold a state dict") };
    let mut storages: HashMap<String, Tensor> = HashMap::new();
    let mut tensors = Vec::with_capacity(entries.len());
    for (name, value) in entries {
        let (Value::Str(name), Value::Tensor(stored)) = (name, value) else { continue };
        if !storages.contains_key(&stored.key) {
            let bytes = record(&mut archive, &format!("{prefix}data/{}", stored.key))?;
            let elements = (bytes.len() / stored.kind.elt_size_in_bytes()) as i64;
            storages.insert(stored.key.clone(), Tensor::from_data_size(&bytes, &[elements], stored.kind));
        }
        let storage = &storages[&stored.key];
        let tensor = storage.f_as_strided(stored.size.as_slice(), stored.stride.as_slice(), stored.offset).with_context(|| format!("{name}: its shape does not fit its storage"))?;
        tensors.push((name, tensor.contiguous()));
    }
    Ok(tensors)
}

fn record(archive: &mut zip::ZipArchive<std::fs::File>, name: &str) -> Result<Vec<u8>> {
    let mut entry = archive.by_name(name).with_context(|| format!("no record {name} in the archive"))?;
    let mut bytes = Vec::with_capacity(entry.size() as usize);
    entry.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// A tensor as the pickle describes it: a view of a storage record.
#[derive(Clone, Debug)]
struct Stored {
    key: String,
    kind: Kind,
    offset: i64,
    size: Vec<i64>,
    stride: Vec<i64>,
}

#[derive(Clone, Debug)]
enum Value {
    /// None, a bool or a float: a requires_grad flag, say, which the
    /// weights do not need; kept only for its place on the stack.
    Unread,
    Int(i64),
    Str(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    /// `module.name`, to be called by REDUCE.
    Global(String),
    Storage { key: String, kind: Kind },
    Tensor(Stored),
}

/// The value a pickle builds, for the opcodes of protocols 2 to 4.
fn unpickle(bytes: &[u8]) -> Result<Value> {
    let mut input = Input { bytes, at: 0 };
    let mut stack: Vec<Value> = Vec::new();
    let mut marks: Vec<usize> = Vec::new();
    let mut memo: HashMap<u32, Value> = HashMap::new();
    let pop = |stack: &mut Vec<Value>| stack.pop().ok_or_else(|| anyhow!("stack underflow"));
    loop {
        let at = input.at;
        let opcode = input.u8()?;
        match opcode {
            0x80 => drop(input.u8()?),            // PROTO
            0x95 => drop(input.take(8)?),         // FRAME
            b'.' => return pop(&mut stack),       // STOP
            b'(' => marks.push(stack.len()),      // MARK
            b'N' | 0x88 | 0x89 => stack.push(Value::Unread), // NONE, NEWTRUE, NEWFALSE
            b'K' => stack.push(Value::Int(input.u8()? as i64)),
            b'M' => stack.push(Value::Int(u16::from_le_bytes(input.array()?) as i64)),
            b'J' => stack.push(Value::Int(i32::from_le_bytes(input.array()?) as i64)),
            0x8a => {
                // LONG1: a little-endian two's-complement integer of n bytes.
                let n = input.u8()? as usize;
                let digits = input.take(n)?;
                if n > 8 {
                    bail!("an integer of {n} bytes at byte {at}");
                }
                let mut buffer = [if digits.last().is_some_and(|b| b & 0x80 != 0) { 0xff } else { 0 }; 8];
                buffer[..n].copy_from_slice(digits);
                stack.push(Value::Int(i64::from_le_bytes(buffer)));
            }
            b'G' => {
                // BINFLOAT
                input.take(8)?;
                stack.push(Value::Unread);
            }
            b'X' => {
                let n = u32::from_le_bytes(input.array()?) as usize;
                stack.push(Value::Str(input.text(n)?));
            }
            0x8c => {
                let n = input.u8()? as usize;
                stack.push(Value::Str(input.text(n)?));
            }
            b'c' => {
                let module = input.line()?;
                let name = input.line()?;
                stack.push(Value::Global(format!("{module}.{name}")));
            }
            0x93 => {
                // STACK_GLOBAL
                let (Value::Str(name), Value::Str(module)) = (pop(&mut stack)?, pop(&mut stack)?) else { bail!("STACK_GLOBAL without two names at byte {at}") };
                stack.push(Value::Global(format!("{module}.{name}")));
            }
            b'q' | b'r' | 0x94 => {
                let id = match opcode {
                    b'q' => input.u8()? as u32,
                    b'r' => u32::from_le_bytes(input.array()?),
                    _ => memo.len() as u32,
                };
                memo.insert(id, stack.last().cloned().ok_or_else(|| anyhow!("memo of an empty stack"))?);
            }
            b'h' | b'j' => {
                let id = if opcode == b'h' { input.u8()? as u32 } else { u32::from_le_bytes(input.array()?) };
                stack.push(memo.get(&id).cloned().ok_or_else(|| anyhow!("memo {id} read before it was written"))?);
            }
            b')' => stack.push(Value::Tuple(Vec::new())),
            b']' => stack.push(Value::List(Vec::new())),
            b'}' => stack.push(Value::Dict(Vec::new())),
            b't' => {
                let start = marks.pop().ok_or_else(|| anyhow!("TUPLE without a mark"))?;
                let items = stack.split_off(start);
                stack.push(Value::Tuple(items));
            }
            0x85..=0x87 => {
                let n = (opcode - 0x84) as usize;
                let start = stack.len().checked_sub(n).ok_or_else(|| anyhow!("stack underflow"))?;
                let items = stack.split_off(start);
                stack.push(Value::Tuple(items));
            }
            b's' | b'u' => {
                let start = if opcode == b's' { stack.len().saturating_sub(2) } else { marks.pop().ok_or_else(|| anyhow!("SETITEMS without a mark"))? };
                let items = stack.split_off(start);
                let Some(Value::Dict(entries)) = stack.last_mut() else { bail!("SETITEM on something not a dict at byte {at}") };
                let mut items = items.into_iter();
                while let (Some(key), Some(value)) = (items.next(), items.next()) {
                    entries.push((key, value));
                }
            }
            b'a' | b'e' => {
                let start = if opcode == b'a' { stack.len().saturating_sub(1) } else { marks.pop().ok_or_else(|| anyhow!("APPENDS without a mark"))? };
                let items = stack.split_off(start);
                let Some(Value::List(list)) = stack.last_mut() else { bail!("APPEND on something not a list at byte {at}") };
                list.extend(items);
            }
            b'Q' => {
                let Value::Tuple(id) = pop(&mut stack)? else { bail!("a persistent id that is not a tuple at byte {at}") };
                stack.push(storage(&id).with_context(|| format!("the storage at byte {at}"))?);
            }
            b'R' => {
                let args = pop(&mut stack)?;
                let Value::Global(function) = pop(&mut stack)? else { bail!("REDUCE of something not a global at byte {at}") };
                stack.push(call(&function, args).with_context(|| format!("at byte {at}"))?);
            }
            // BUILD sets an object's attributes: a state dict's only one is
            // `_metadata` (per-module versions), which weights do not need.
            b'b' => drop(pop(&mut stack)?),
            other => bail!("pickle opcode 0x{other:02x} at byte {at} is not one torch.save writes"),
        }
    }
}

/// `('storage', torch.FloatStorage, key, location, numel)`.
fn storage(id: &[Value]) -> Result<Value> {
    let [Value::Str(tag), Value::Global(class), Value::Str(key), ..] = id else { bail!("not a storage id: {id:?}") };
    if tag != "storage" {
        bail!("persistent id `{tag}`, not a storage");
    }
    let kind = match class.strip_prefix("torch.").and_then(|c| c.strip_suffix("Storage")) {
        Some("Float") => Kind::Float,
        Some("Double") => Kind::Double,
        Some("Half") => Kind::Half,
        Some("BFloat16") => Kind::BFloat16,
        Some("Long") => Kind::Int64,
        Some("Int") => Kind::Int,
        Some("Short") => Kind::Int16,
        Some("Char") => Kind::Int8,
        Some("Byte") => Kind::Uint8,
        Some("Bool") => Kind::Bool,
        _ => bail!("storage type {class} is not read"),
    };
    Ok(Value::Storage { key: key.clone(), kind })
}

/// The globals a state dict calls: nothing else is run.
fn call(function: &str, args: Value) -> Result<Value> {
    let Value::Tuple(args) = args else { bail!("{function} called without an argument tuple") };
    match function {
        // The state dict itself, and the (empty) hooks of every tensor.
        "collections.OrderedDict" => Ok(Value::Dict(Vec::new())),
        "torch._utils._rebuild_tensor_v2" => {
            let [Value::Storage { key, kind }, Value::Int(offset), Value::Tuple(size), Value::Tuple(stride), ..] = args.as_slice() else { bail!("{function} with arguments {args:?}") };
            Ok(Value::Tensor(Stored { key: key.clone(), kind: *kind, offset: *offset, size: ints(size)?, stride: ints(stride)? }))
        }
        "torch._utils._rebuild_parameter" => args.into_iter().next().filter(|t| matches!(t, Value::Tensor(_))).ok_or_else(|| anyhow!("{function} without a tensor")),
        other => bail!("the pickle calls {other}, which a state dict does not: not read"),
    }
}

fn ints(values: &[Value]) -> Result<Vec<i64>> {
    values.iter().map(|v| if let Value::Int(i) = v { Ok(*i) } else { bail!("{v:?} where a size was expected") }).collect()
}

struct Input<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Input<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or_else(|| anyhow!("the pickle ends early, at byte {}", self.at))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("N bytes taken"))
    }
    fn text(&mut self, n: usize) -> Result<String> {
        Ok(String::from_utf8(self.take(n)?.to_vec())?)
    }
    fn line(&mut self) -> Result<String> {
        let rest = &self.bytes[self.at..];
        let n = rest.iter().position(|&b| b == b'\n').ok_or_else(|| anyhow!("a GLOBAL without its newline at byte {}", self.at))?;
        let text = self.text(n)?;
        self.at += 1;
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The opcodes of `torch.save(OrderedDict(w=tensor))` for a 2 x 3 view
    /// at offset 1 of a 7-float storage, as pickletools shows them.
    #[test]
    fn a_state_dict_pickle_gives_its_tensor_views() {
        let mut p = b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01(X\x01\x00\x00\x00wq\x02ctorch._utils\n_rebuild_tensor_v2\nq\x03((X\x07\x00\x00\x00storageq\x04ctorch\nFloatStorage\nq\x05X\x01\x00\x00\x000q\x06X\x03\x00\x00\x00cpuq\x07K\x07tq\x08QK\x01K\x02K\x03\x86q\tK\x03K\x01\x86q\n\x89h\x00)Rq\x0btq\x0cRq\ru}q\x0eX\t\x00\x00\x00_metadataq\x0fh\x00)Rq\x10sb.".to_vec();
        let Value::Dict(entries) = unpickle(&p).unwrap() else { panic!("not a dict") };
        let [(Value::Str(name), Value::Tensor(t))] = entries.as_slice() else { panic!("{entries:?}") };
        assert_eq!((name.as_str(), t.key.as_str(), t.kind, t.offset, t.size.as_slice(), t.stride.as_slice()), ("w", "0", Kind::Float, 1, &[2i64, 3][..], &[3i64, 1][..]));
        // A global outside a state dict's few is refused, not run.
        p = b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00ls\x85R.".to_vec();
        assert!(format!("{:#}", unpickle(&p).unwrap_err()).contains("os.system"));
    }
}
