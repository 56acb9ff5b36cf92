//! Image archives: `oci-archive` (a tar of an OCI layout) and
//! `docker-archive` (the `docker save` / `docker load` format: config,
//! uncompressed layer tars, `manifest.json`). Both are written through a
//! temp file + rename and have fixed owners, modes and times. The sinks of
//! [`crate::image::sink`] write them from any image source.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context as _, Result};

use crate::oci::{Hashing, ImageConfig, Manifest};

/// A temporary directory next to `output`, for what is assembled before
/// the final rename.
pub fn sibling_tempdir(output: &Path) -> Result<tempfile::TempDir> {
    let parent = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)
        .with_context(|| format!("creating output directory {}", parent.display()))?;
    tempfile::Builder::new()
        .prefix(".boxwright-pull-")
        .tempdir_in(&parent)
        .with_context(|| format!("creating a temporary directory in {}", parent.display()))
}

/// Write a tar to `dest` through a temp file + rename.
pub fn write_tar_atomically(
    dest: &Path,
    fill: impl FnOnce(&mut tar::Builder<BufWriter<File>>) -> Result<()>,
) -> Result<()> {
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".boxwright-archive-")
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

/// A reader of a layer's tar, whatever its compression (sniffed: gzip,
/// zstd, or none).
fn layer_reader(path: &Path) -> Result<Box<dyn Read>> {
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    crate::layer::decoder(BufReader::new(f))
        .with_context(|| format!("reading layer {}", path.display()))
}

/// A `docker save` archive at `dest`: `manifest.json` (Config, RepoTags,
/// Layers), the config under its digest (so the image ID is the config
/// digest), and each layer (`layers`, the files of the manifest's layers in
/// order) uncompressed into `scratch` as `<diffID hex>.tar`, checked
/// against its diff ID.
pub(crate) fn docker_archive(
    dest: &Path,
    scratch: &Path,
    manifest: &Manifest,
    config: &ImageConfig,
    config_bytes: &[u8],
    layers: &[PathBuf],
    repo_tag: Option<String>,
) -> Result<()> {
    let mut tars = Vec::new();
    for ((l, file), diff_id) in manifest
        .layers
        .iter()
        .zip(layers)
        .zip(&config.rootfs.diff_ids)
    {
        let out = scratch.join(format!("{}.tar", diff_id.hex()));
        if !out.exists() {
            let mut r = layer_reader(file)?;
            let mut w = Hashing::new(BufWriter::new(File::create(&out)?));
            std::io::copy(&mut r, &mut w)
                .with_context(|| format!("decompressing layer {}", l.digest))?;
            let (mut w, got, _) = w.finish();
            w.flush()?;
            if &got != diff_id {
                return Err(anyhow!(
                    "layer {} uncompresses to {got}, but the config's diff ID is {diff_id}",
                    l.digest
                ));
            }
        }
        tars.push((format!("{}.tar", diff_id.hex()), out));
    }
    let config_name = format!("{}.json", manifest.config.digest.hex());
    let manifest = serde_json::json!([{
        "Config": config_name,
        "RepoTags": repo_tag.into_iter().collect::<Vec<_>>(),
        "Layers": tars.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
    }]);
    let manifest_bytes = serde_json::to_vec(&manifest)?;
    let mut added = HashSet::new();
    write_tar_atomically(dest, |b| {
        append_bytes(b, &config_name, config_bytes)?;
        for (name, path) in &tars {
            if added.insert(name.clone()) {
                append_file(b, Path::new(name), path)?;
            }
        }
        append_bytes(b, "manifest.json", &manifest_bytes)
    })
}
