//! `trials/<id>/checkpoint-<step>.safetensors`: a trial's whole training
//! state at a step, as one safetensors file (readable by Hugging Face's
//! `safetensors` too), with string metadata and a CRC-32 of the tensor
//! bytes in its header. What the tensors and metadata mean is the trainer's
//! business; this module owns the files: written in full beside the others
//! (`.partial`), synced, and only then renamed into place ([`commit`]) by
//! the process that records the trial, after the points up to that step are
//! durable, so a checkpoint never runs ahead of the record. Older ones are
//! removed only once the new one is in place.
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

const PREFIX: &str = "checkpoint-";
const SUFFIX: &str = ".safetensors";
/// A checkpoint still being written, or one whose writer died.
const PARTIAL: &str = ".partial";
/// The metadata key of the CRC-32 (hex) of every tensor's bytes in order.
const CHECKSUM: &str = "bertlab.crc32";

/// One tensor as bytes: safetensors' dtype name (`F32`, `I64`, `U8`, ...),
/// its shape, and its data in row-major order, little-endian.
pub struct Stored<'a> {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<usize>,
    pub bytes: std::borrow::Cow<'a, [u8]>,
}

/// A checkpoint read back: its metadata and tensors, checksum verified.
pub struct Checkpoint {
    pub step: i64,
    pub path: PathBuf,
    pub metadata: BTreeMap<String, String>,
    pub tensors: Vec<Stored<'static>>,
}

/// The file of the checkpoint at `step` in the trial folder `dir`.
pub fn path(dir: &Path, step: i64) -> PathBuf {
    dir.join(format!("{PREFIX}{step}{SUFFIX}"))
}

/// The step of the committed checkpoint file `path`, from its name.
pub fn step_of(path: &Path) -> Option<i64> {
    path.file_name()?.to_str()?.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?.parse().ok()
}

/// The committed checkpoints of the trial folder `dir`, newest (highest
/// step) first.
pub fn list(dir: &Path) -> Vec<(i64, PathBuf)> {
    let mut found: Vec<(i64, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| Some((step_of(&entry.path())?, entry.path())))
        .collect();
    found.sort_by(|a, b| b.0.cmp(&a.0));
    found
}

/// Writes the checkpoint at `step` in full, synced, as a `.partial` file
/// beside where it will be; [`commit`] puts it in place. On a failure (a
/// full disk, a file-size limit) nothing is left behind and the error names
/// the file and the cause.
pub fn stage(dir: &Path, step: i64, metadata: &BTreeMap<String, String>, tensors: &[Stored]) -> Result<PathBuf> {
    let staged = PathBuf::from(format!("{}{PARTIAL}", path(dir, step).display()));
    let written = write_file(&staged, metadata, tensors);
    if written.is_err() {
        let _ = std::fs::remove_file(&staged);
    }
    written.with_context(|| format!("writing the checkpoint {}", staged.display()))?;
    Ok(staged)
}

fn write_file(staged: &Path, metadata: &BTreeMap<String, String>, tensors: &[Stored]) -> Result<()> {
    let mut crc = crc32fast::Hasher::new();
    let mut entries = serde_json::Map::new();
    let mut offset = 0usize;
    for tensor in tensors {
        crc.update(&tensor.bytes);
        let end = offset + tensor.bytes.len();
        entries.insert(tensor.name.clone(), serde_json::json!({"dtype": tensor.dtype, "shape": tensor.shape, "data_offsets": [offset, end]}));
        offset = end;
    }
    let mut metadata = metadata.clone();
    metadata.insert(CHECKSUM.into(), format!("{:08x}", crc.finalize()));
    entries.insert("__metadata__".into(), serde_json::to_value(&metadata)?);
    let mut header = serde_json::to_vec(&entries)?;
    // The data starts 8-byte aligned, as the safetensors writer does it.
    while (header.len() + 8) % 8 != 0 {
        header.push(b' ');
    }
    let mut file = BufWriter::with_capacity(1 << 20, std::fs::File::create(staged)?);
    file.write_all(&(header.len() as u64).to_le_bytes())?;
    file.write_all(&header)?;
    for tensor in tensors {
        file.write_all(&tensor.bytes)?;
    }
    let file = file.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok(())
}

/// Puts a staged checkpoint in place (rename, then sync the folder) and
/// removes all but the newest `keep` (at least this one).
pub fn commit(staged: &Path, keep: usize) -> Result<PathBuf> {
    let name = staged.to_string_lossy();
    let Some(final_path) = name.strip_suffix(PARTIAL).map(PathBuf::from) else { bail!("{} is not a staged checkpoint", staged.display()) };
    std::fs::rename(staged, &final_path).with_context(|| format!("putting the checkpoint {} in place", final_path.display()))?;
    crate::atomic::sync_folder(&final_path).with_context(|| format!("syncing the folder of {}", final_path.display()))?;
    let dir = final_path.parent().unwrap_or(Path::new("."));
    for (_, older) in list(dir).into_iter().skip(keep.max(1)) {
        let _ = std::fs::remove_file(older);
    }
    Ok(final_path)
}

/// Removes what a writer that died mid-way left (`.partial` files).
pub fn remove_partial(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().ends_with(PARTIAL) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Removes every checkpoint of the trial folder `dir` (a fresh start).
pub fn remove_all(dir: &Path) {
    remove_partial(dir);
    for (_, path) in list(dir) {
        let _ = std::fs::remove_file(path);
    }
}

fn header(file: &mut impl Read, path: &Path) -> Result<(serde_json::Map<String, serde_json::Value>, usize)> {
    let mut length = [0u8; 8];
    file.read_exact(&mut length).with_context(|| format!("reading {}", path.display()))?;
    let length = u64::from_le_bytes(length) as usize;
    if length > 100 << 20 {
        bail!("{} is not a checkpoint (header of {length} bytes)", path.display());
    }
    let mut text = vec![0u8; length];
    file.read_exact(&mut text).with_context(|| format!("reading {}", path.display()))?;
    let header = serde_json::from_slice(&text).with_context(|| format!("{} has no readable header", path.display()))?;
    Ok((header, 8 + length))
}

/// The metadata of the checkpoint at `path`, without reading its tensors.
pub fn metadata(path: &Path) -> Result<BTreeMap<String, String>> {
    let mut file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let (header, _) = header(&mut file, path)?;
    Ok(header.get("__metadata__").cloned().map(serde_json::from_value).transpose()?.unwrap_or_default())
}

/// Reads the checkpoint `path` (at `step`) and checks its bytes against
/// its checksum.
pub fn read(step: i64, path: &Path) -> Result<Checkpoint> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut file = std::io::BufReader::with_capacity(1 << 20, file);
    let (mut header, _) = header(&mut file, path)?;
    let metadata: BTreeMap<String, String> = header.remove("__metadata__").map(serde_json::from_value).transpose()?.unwrap_or_default();
    let offsets = |v: &serde_json::Value| -> Option<(usize, usize)> { Some((v["data_offsets"][0].as_u64()? as usize, v["data_offsets"][1].as_u64()? as usize)) };
    let mut entries: Vec<(String, serde_json::Value)> = header.into_iter().collect();
    entries.sort_by_key(|(_, v)| offsets(v).map(|o| o.0));
    // Read in file order, one tensor at a time: memory holds the tensors
    // once, never the file besides them.
    let mut crc = crc32fast::Hasher::new();
    let mut at = 0usize;
    let mut tensors = Vec::with_capacity(entries.len());
    for (name, entry) in entries {
        let (begin, end) = offsets(&entry).filter(|&(b, e)| b == at && b <= e).with_context(|| format!("{}: {name} is not where the header says", path.display()))?;
        let mut bytes = vec![0u8; end - begin];
        file.read_exact(&mut bytes).with_context(|| format!("{}: cut short in {name}", path.display()))?;
        crc.update(&bytes);
        at = end;
        tensors.push(Stored {
            name,
            dtype: entry["dtype"].as_str().unwrap_or_default().to_string(),
            shape: entry["shape"].as_array().map(|dims| dims.iter().filter_map(|d| d.as_u64()).map(|d| d as usize).collect()).unwrap_or_default(),
            bytes: std::borrow::Cow::Owned(bytes),
        });
    }
    let expected = metadata.get(CHECKSUM).with_context(|| format!("{} has no checksum", path.display()))?;
    let found = format!("{:08x}", crc.finalize());
    if *expected != found {
        bail!("{} is damaged: its checksum is {found}, its header says {expected}", path.display());
    }
    Ok(Checkpoint { step, path: path.to_owned(), metadata, tensors })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn tensors() -> Vec<Stored<'static>> {
        vec![
            Stored { name: "b".into(), dtype: "F32".into(), shape: vec![2], bytes: Cow::Owned([1.5f32, -2.0].iter().flat_map(|v| v.to_le_bytes()).collect()) },
            Stored { name: "a".into(), dtype: "U8".into(), shape: vec![3], bytes: Cow::Owned(vec![7, 8, 9]) },
        ]
    }

    #[test]
    fn written_read_back_and_only_the_newest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let metadata = BTreeMap::from([("step".to_string(), "10".to_string())]);
        for step in [10, 20, 30] {
            let staged = stage(dir.path(), step, &metadata, &tensors()).unwrap();
            assert!(list(dir.path()).iter().all(|(s, _)| *s != step), "not listed before its commit");
            commit(&staged, 2).unwrap();
        }
        let kept: Vec<i64> = list(dir.path()).iter().map(|(s, _)| *s).collect();
        assert_eq!(kept, vec![30, 20]);
        let back = read(30, &path(dir.path(), 30)).unwrap();
        assert_eq!(back.metadata["step"], "10");
        assert_eq!(back.tensors.iter().map(|t| (t.name.as_str(), t.bytes.to_vec())).collect::<Vec<_>>(), tensors().iter().map(|t| (t.name.as_str(), t.bytes.to_vec())).collect::<Vec<_>>());
        assert_eq!(super::metadata(&path(dir.path(), 30)).unwrap()["step"], "10");
    }

    #[test]
    fn a_damaged_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let committed = commit(&stage(dir.path(), 5, &BTreeMap::new(), &tensors()).unwrap(), 1).unwrap();
        let mut bytes = std::fs::read(&committed).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        std::fs::write(&committed, bytes).unwrap();
        let error = read(5, &committed).err().unwrap().to_string();
        assert!(error.contains("is damaged"), "{error}");
    }
}
