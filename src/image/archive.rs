//! Image archives: `oci-archive` (a tar of an OCI layout) and
//! `docker-archive` (the `docker save` / `docker load` format: config,
//! uncompressed layer tars, `manifest.json`). Both are written through a
//! temp file + rename and have fixed owners, modes and times. The sinks of
//! [`crate::image::sink`] write them from any image source.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context as _, Result};

use crate::error::bad_input;
use crate::oci::{Digest, Hashing, ImageConfig, Manifest};
use crate::render::human_bytes;

/// A tar block: headers and the padding of entries are whole blocks.
const BLOCK: usize = 512;

/// A temporary directory next to `output`, for the layout an archive is
/// made from (`.boxwright-layout-*`), removed when it is dropped.
pub fn sibling_tempdir(output: &Path) -> Result<tempfile::TempDir> {
    let parent = super::output_parent(output)?;
    tempfile::Builder::new()
        .prefix(&format!("{}layout-", super::output::TEMP_PREFIX))
        .tempdir_in(&parent)
        .with_context(|| format!("creating a temporary directory in {}", parent.display()))
}

/// Write a tar to `dest` through a temp file + rename.
pub fn write_tar_atomically(
    dest: &Path,
    fill: impl FnOnce(&mut tar::Builder<BufWriter<File>>) -> Result<()>,
) -> Result<()> {
    let parent = super::output_parent(dest)?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!("{}archive-", super::output::TEMP_PREFIX))
        .tempfile_in(&parent)
        .with_context(|| format!("creating a temporary file in {}", parent.display()))?;
    let file = tmp.reopen().context("opening the temporary archive")?;
    let mut b = tar::Builder::new(BufWriter::new(file));
    fill(&mut b)?;
    let mut w = b.into_inner().context("finishing the archive")?;
    w.flush().context("writing the archive")?;
    w.get_ref().sync_all().context("writing the archive")?;
    drop(w);
    tmp.persist(dest)
        .map_err(|e| anyhow!("storing {}: {}", dest.display(), e.error))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o644))?;
    Ok(())
}

fn file_header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(tar::EntryType::Regular);
    h
}

fn append_file<W: Write>(b: &mut tar::Builder<W>, name: &Path, path: &Path) -> Result<()> {
    crate::cancel::check()?;
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let len = f.metadata()?.len();
    let mut h = file_header(len);
    b.append_data(&mut h, name, BufReader::new(f))
        .with_context(|| format!("archiving {}", path.display()))
}

fn append_bytes<W: Write>(b: &mut tar::Builder<W>, name: &str, bytes: &[u8]) -> Result<()> {
    let mut h = file_header(bytes.len() as u64);
    b.append_data(&mut h, name, bytes)
        .with_context(|| format!("archiving {name}"))
}

/// Files and directories of `dir`, sorted, with fixed owners, modes and times.
pub fn append_tree<W: Write>(b: &mut tar::Builder<W>, dir: &Path, prefix: &Path) -> Result<()> {
    let mut names: Vec<_> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()?;
    names.sort();
    for n in names {
        let path = dir.join(&n);
        let name = prefix.join(&n);
        if path.is_dir() {
            let mut h = tar::Header::new_ustar();
            h.set_size(0);
            h.set_mode(0o755);
            h.set_mtime(0);
            h.set_uid(0);
            h.set_gid(0);
            h.set_entry_type(tar::EntryType::Directory);
            b.append_data(&mut h, &name, std::io::empty())?;
            append_tree(b, &path, &name)?;
        } else {
            append_file(b, &name, &path)?;
        }
    }
    Ok(())
}

/// The most one layer of a `docker-archive` is decompressed to, unless
/// [`UNPACKED_LAYER_MAX_ENV`] says otherwise: a small blob that expands
/// without end is refused as it passes this, not written until the disk
/// is full.
pub const MAX_UNPACKED_LAYER: u64 = 16 << 30;

/// The environment variable that sets the bound of [`MAX_UNPACKED_LAYER`]
/// (a size, as `--cache-max` takes: `64GiB`, `512MiB`).
pub const UNPACKED_LAYER_MAX_ENV: &str = "BOXWRIGHT_UNPACKED_LAYER_MAX";

/// The bound on a docker-archive layer's decompressed size:
/// [`UNPACKED_LAYER_MAX_ENV`], else [`MAX_UNPACKED_LAYER`]. A value that is
/// not a size is bad input naming the variable.
pub fn unpacked_layer_max() -> Result<u64> {
    match std::env::var(UNPACKED_LAYER_MAX_ENV) {
        Ok(v) if !v.trim().is_empty() => crate::render::parse_size(&v)
            .map_err(|e| bad_input(format!("{UNPACKED_LAYER_MAX_ENV}={v:?}: {e}"))),
        _ => Ok(MAX_UNPACKED_LAYER),
    }
}

/// A `docker save` archive at `dest`: the config under its digest (so the
/// image ID is the config digest), each layer (`layers`, the files of the
/// manifest's layers in order) decompressed straight into it as
/// `<diffID hex>.tar`, then `manifest.json` (Config, RepoTags, Layers).
/// A layer that decompresses to more than `limit` bytes, does not
/// decompress or does not match its diff ID is bad input naming it, found
/// as it is read: the temporary archive is then removed.
pub(crate) fn docker_archive(
    dest: &Path,
    manifest: &Manifest,
    config: &ImageConfig,
    config_bytes: &[u8],
    layers: &[PathBuf],
    repo_tags: &[String],
    limit: u64,
) -> Result<()> {
    let names: Vec<String> = config
        .rootfs
        .diff_ids
        .iter()
        .map(|d| format!("{}.tar", d.hex()))
        .collect();
    let config_name = format!("{}.json", manifest.config.digest.hex());
    let listed = serde_json::json!([{
        "Config": config_name,
        "RepoTags": repo_tags,
        "Layers": names,
    }]);
    let manifest_bytes = serde_json::to_vec(&listed)?;
    let mut added = HashSet::new();
    write_tar_atomically(dest, |b| {
        append_bytes(b, &config_name, config_bytes)?;
        for (((l, file), diff_id), name) in manifest
            .layers
            .iter()
            .zip(layers)
            .zip(&config.rootfs.diff_ids)
            .zip(&names)
        {
            if added.insert(name.clone()) {
                let layer = Layer {
                    digest: &l.digest,
                    diff_id,
                    limit,
                };
                append_layer(b.get_mut(), name, file, &layer)?;
            }
        }
        append_bytes(b, "manifest.json", &manifest_bytes)
    })
}

/// What a layer's decompressed tar must be.
struct Layer<'a> {
    digest: &'a Digest,
    diff_id: &'a Digest,
    limit: u64,
}

/// The tar entry `name`: the layer blob at `file` decompressed, hashed and
/// counted as it is written. A tar header holds the size, which is known
/// only at the end: a blank header goes first and is filled in then.
fn append_layer(w: &mut BufWriter<File>, name: &str, file: &Path, layer: &Layer) -> Result<()> {
    let f = File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let mut r = crate::layer::decoder(BufReader::new(f))
        .with_context(|| format!("reading layer {}", layer.digest))?;
    let at = w.stream_position().context("writing the archive")?;
    w.write_all(&[0; BLOCK]).context("writing the archive")?;
    let mut h = Hashing::new(&mut *w);
    let mut buf = vec![0; 256 << 10];
    let mut size = 0u64;
    loop {
        crate::cancel::check()?;
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(bad_input(format!(
                    "layer {} does not decompress: {e}; the blob is damaged",
                    layer.digest
                )))
            }
        };
        size += n as u64;
        if size > layer.limit {
            return Err(bad_input(format!(
                "layer {} decompresses to more than {}, the most a docker-archive layer may hold \
                 (set {UNPACKED_LAYER_MAX_ENV} to allow more)",
                layer.digest,
                human_bytes(layer.limit)
            )));
        }
        h.write_all(&buf[..n]).context("writing the archive")?;
    }
    let (w, got, _) = h.finish();
    if &got != layer.diff_id {
        return Err(bad_input(format!(
            "layer {} decompresses to {got}, but the config's diff ID is {}",
            layer.digest, layer.diff_id
        )));
    }
    let pad = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
    w.write_all(&[0; BLOCK][..pad as usize])
        .context("writing the archive")?;
    let mut header = file_header(size);
    header
        .set_path(name)
        .with_context(|| format!("archiving {name}"))?;
    header.set_cksum();
    let end = w.stream_position().context("writing the archive")?;
    w.seek(SeekFrom::Start(at)).context("writing the archive")?;
    w.write_all(header.as_bytes())
        .context("writing the archive")?;
    w.seek(SeekFrom::Start(end))
        .context("writing the archive")?;
    Ok(())
}
