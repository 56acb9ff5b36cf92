use super::*;
use crate::oci::MEDIA_TYPE_LAYER_GZIP;

fn set_mtime(path: &Path, secs: u64) {
    File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}

/// A cache holding one layer under `Key::test(1)`, whose stored blob has
/// an old mtime, and a recipe whose last build used it.
fn cached_layer(dir: &Path) -> (Digest, PathBuf, PathBuf) {
    let cache = open(dir);
    let bytes = b"layer bytes";
    let blob = dir.join("blob");
    fs::write(&blob, bytes).unwrap();
    let d = Digest::of(bytes);
    let layer = BuiltLayer {
        descriptor: Descriptor::new(MEDIA_TYPE_LAYER_GZIP, d.clone(), bytes.len() as u64),
        diff_id: d.clone(),
        tar_size: bytes.len() as u64,
    };
    cache.put(&Key::test(1), &layer, &blob).unwrap();
    let stored = cache.blobs.path(&d);
    set_mtime(&stored, 1_600_000_000);
    let recipe = dir.join("recipe.toml");
    fs::write(&recipe, "").unwrap();
    let id = recipe_id(&recipe).unwrap();
    write_recent(&cache.dir.join(RECENT), &id, vec![d.clone()]).unwrap();
    (d, stored, recipe)
}

fn open(dir: &Path) -> LayerCache {
    let blobs = BlobCache::new(Some(dir.join("cache"))).unwrap();
    LayerCache::open(blobs, true, DEFAULT_MAX).unwrap()
}

#[test]
fn a_hit_checked_ahead_is_taken_and_one_rewritten_since_is_a_miss() {
    let dir = tempfile::tempdir().unwrap();
    let (d, stored, recipe) = cached_layer(dir.path());

    let cache = open(dir.path());
    cache.expect(&recipe);
    let ahead = &cache.recipe.get().unwrap().1;
    assert!(ahead.wait(&d).is_some(), "checked ahead");
    let out = LayoutWriter::create(&dir.path().join("a")).unwrap();
    let hit = cache.get(&Key::test(1), &out).unwrap().expect("a hit");
    assert_eq!(hit.descriptor.digest, d);

    let cache = open(dir.path());
    cache.expect(&recipe);
    assert!(cache.recipe.get().unwrap().1.wait(&d).is_some());
    // Rewritten in place after the check, same size, its mtime put back:
    // only the ctime tells, and the hit hashes it again.
    fs::write(&stored, b"LAYER BYTES").unwrap();
    set_mtime(&stored, 1_600_000_000);
    let out = LayoutWriter::create(&dir.path().join("b")).unwrap();
    assert!(cache.get(&Key::test(1), &out).unwrap().is_none());
}

#[test]
fn a_build_remembers_the_blobs_it_used_for_its_recipe() {
    let dir = tempfile::tempdir().unwrap();
    let (d, _, recipe) = cached_layer(dir.path());
    fs::remove_file(dir.path().join("cache/layers").join(RECENT)).unwrap();
    let cache = open(dir.path());
    cache.expect(&recipe);
    let out = LayoutWriter::create(&dir.path().join("a")).unwrap();
    cache.get(&Key::test(1), &out).unwrap().expect("a hit");
    cache.finish().unwrap();
    let recent = read_recent(&cache.dir.join(RECENT));
    assert_eq!(recent[&recipe_id(&recipe).unwrap()], vec![d]);
}

/// Files of the cache that are named pipes are passed over, never
/// waited on (a build, `cache stats` and `cache prune` hung on one), and
/// an entry that claims an impossible size does not overflow the
/// accounting (it panicked).
#[test]
fn pipes_and_impossible_sizes_in_the_cache_are_passed_over() {
    let dir = tempfile::tempdir().unwrap();
    let (_, stored, recipe) = cached_layer(dir.path());
    let layers = dir.path().join("cache/layers");
    let entry = fs::read_dir(&layers)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "json"))
        .unwrap();
    // Sealed for the key it is named by, so that it counts.
    let mut huge: Record = serde_json::from_slice(&fs::read(&entry).unwrap()).unwrap();
    huge.size = u64::MAX;
    huge.seal = huge.seal(&Key::test(0x77));
    fs::write(
        layers.join(format!("{}.json", "7".repeat(64))),
        serde_json::to_vec(&huge).unwrap(),
    )
    .unwrap();
    let cache = open(dir.path());
    assert_eq!(cache.stats().bytes, u64::MAX);
    cache.prune(DEFAULT_MAX).unwrap();

    let mkfifo = |p: &Path| {
        let _ = fs::remove_file(p);
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    };
    let dir_path = dir.path().to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (_, stored2, recipe2) = cached_layer(&dir_path.join("again"));
        for p in [
            stored.clone(),
            stored2.clone(),
            entry.clone(),
            layers.join(RECENT),
            layers.join("key-memo"),
            layers.join("stat-index"),
        ] {
            mkfifo(&p);
        }
        for (root, recipe) in [
            (dir_path.clone(), recipe),
            (dir_path.join("again"), recipe2),
        ] {
            let cache = open(&root);
            cache.expect(&recipe);
            let out = LayoutWriter::create(&root.join("out")).unwrap();
            assert!(cache.get(&Key::test(1), &out).unwrap().is_none());
            cache.stats();
            cache.prune(DEFAULT_MAX).unwrap();
        }
        tx.send(()).unwrap();
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the cache waited on a named pipe");
}

/// An entry whose fields were edited (its diffID, its media type), or
/// that was put under another key's name, is a miss and is removed: a
/// rebuild never takes a wrong layer from it.
#[test]
fn an_edited_or_moved_entry_is_a_miss() {
    let dir = tempfile::tempdir().unwrap();
    let (d, _, _) = cached_layer(dir.path());
    let cache = open(dir.path());
    let entry = cache.entry_path(&Key::test(1));
    let text = fs::read_to_string(&entry).unwrap();
    let out = LayoutWriter::create(&dir.path().join("out")).unwrap();
    assert!(cache.get(&Key::test(1), &out).unwrap().is_some());
    let edits = [
        text.replace(&format!("\"diffID\":\"{d}"), "\"diffID\":\"sha256:0000"),
        text.replace("tar+gzip", "tar+zstd"),
    ];
    for edited in edits {
        assert_ne!(edited, text);
        fs::write(&entry, &edited).unwrap();
        assert!(
            cache.get(&Key::test(1), &out).unwrap().is_none(),
            "{edited}"
        );
        assert!(!entry.exists(), "the damaged entry is removed");
    }
    fs::write(cache.entry_path(&Key::test(2)), &text).unwrap();
    assert!(cache.get(&Key::test(2), &out).unwrap().is_none());
    fs::write(&entry, &text).unwrap();
    assert!(cache.get(&Key::test(1), &out).unwrap().is_some());
}

/// A directory where a cache file goes (made by hand, or left by a tool
/// that restored the cache): an empty one is removed and the file stored
/// there, so the next build hits; one holding anything is left as it is,
/// and the store fails once with an error that names it and says what to
/// do (it said "Is a directory" on every build, and the empty one stayed
/// for ever).
#[test]
fn a_directory_where_a_cache_file_goes_is_removed_when_empty_else_named() {
    let dir = tempfile::tempdir().unwrap();
    let (d, stored, _) = cached_layer(dir.path());
    let cache = open(dir.path());
    let layer = BuiltLayer {
        descriptor: Descriptor::new(MEDIA_TYPE_LAYER_GZIP, d.clone(), 11),
        diff_id: d,
        tar_size: 11,
    };
    let out = LayoutWriter::create(&dir.path().join("out")).unwrap();
    let empty = cache.entry_path(&Key::test(2));
    fs::create_dir(&empty).unwrap();
    cache.put(&Key::test(2), &layer, &stored).unwrap();
    assert!(empty.is_file());
    assert!(cache.get(&Key::test(2), &out).unwrap().is_some());

    let full = cache.entry_path(&Key::test(3));
    fs::create_dir(&full).unwrap();
    fs::write(full.join("notes"), b"mine").unwrap();
    let said = format!(
        "{:#}",
        cache.put(&Key::test(3), &layer, &stored).unwrap_err()
    );
    assert!(said.contains(&full.display().to_string()), "{said}");
    assert_eq!(
        said.matches(&full.display().to_string()).count(),
        1,
        "{said}"
    );
    assert!(
        said.contains("is a directory") && said.contains("`rm -r`"),
        "{said}"
    );
    assert_eq!(fs::read(full.join("notes")).unwrap(), b"mine");
    assert!(cache.get(&Key::test(3), &out).unwrap().is_none());
    assert_eq!(fs::read(full.join("notes")).unwrap(), b"mine");
    cache.prune(DEFAULT_MAX).unwrap();
    assert!(full.join("notes").exists());

    // The same for the cache's other files.
    let memo = dir.path().join("memo");
    fs::create_dir(&memo).unwrap();
    let mut keys = KeyMemo::default();
    keys.put([7; 32], &Key::test(3));
    keys.save(&memo).unwrap();
    assert!(memo.is_file());
    let memo = dir.path().join("memo2");
    fs::create_dir(&memo).unwrap();
    fs::write(memo.join("x"), b"").unwrap();
    let mut keys = KeyMemo::default();
    keys.put([7; 32], &Key::test(3));
    let said = format!("{:#}", keys.save(&memo).unwrap_err());
    assert_eq!(
        said.matches(&memo.display().to_string()).count(),
        1,
        "{said}"
    );
    assert!(said.contains("is a directory"), "{said}");
}

/// `cache stats` counts only the entries a hit could take, and `cache
/// prune` removes the others (damaged, or copied under another key's
/// name), which no hit would ever take and which held their place for
/// ever.
#[test]
fn stats_and_prune_pass_over_entries_no_hit_can_take() {
    let dir = tempfile::tempdir().unwrap();
    cached_layer(dir.path());
    let cache = open(dir.path());
    let good = cache.entry_path(&Key::test(1));
    let moved = cache.entry_path(&Key::test(2));
    fs::copy(&good, &moved).unwrap();
    let garbage = cache.entry_path(&Key::test(3));
    fs::write(&garbage, b"{not an entry").unwrap();
    let stray = cache.dir.join("notes.json");
    fs::write(&stray, b"{}").unwrap();
    assert_eq!(cache.stats().entries, 1);
    let pruned = cache.prune(DEFAULT_MAX).unwrap();
    assert_eq!(pruned.removed_entries, 2);
    assert_eq!(pruned.after.entries, 1);
    assert!(good.exists() && stray.exists());
    assert!(!moved.exists() && !garbage.exists());
}

/// A layer that cannot be copied into the cache (a full disk) leaves no
/// part of it there. `/proc/self/mem` stands for the failing copy: a
/// regular file that cannot be hard-linked across file systems, and whose
/// first read fails once the copy has been created.
#[test]
fn a_failed_store_leaves_no_part_behind() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path());
    let d = Digest::of(b"never stored");
    let layer = BuiltLayer {
        descriptor: Descriptor::new(MEDIA_TYPE_LAYER_GZIP, d.clone(), 12),
        diff_id: d,
        tar_size: 12,
    };
    assert!(cache
        .put(&Key::test(4), &layer, Path::new("/proc/self/mem"))
        .is_err());
    let left: Vec<_> = fs::read_dir(cache.blobs.root().join("sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Prune reads each entry once and reports what is left as `cache stats`
/// would: least recently used first, a blob removed with the last entry
/// naming it; old temp files in the blob directory go, blobs stay.
#[test]
fn prune_removes_the_least_recently_used_and_reports_what_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path());
    let layer = |bytes: &[u8]| {
        let blob = dir.path().join("blob");
        fs::write(&blob, bytes).unwrap();
        let d = Digest::of(bytes);
        let size = bytes.len() as u64;
        let layer = BuiltLayer {
            descriptor: Descriptor::new(MEDIA_TYPE_LAYER_GZIP, d.clone(), size),
            diff_id: d,
            tar_size: size,
        };
        (layer, blob)
    };
    let (a, a_blob) = layer(b"ten bytes.");
    for (n, used) in [(1, 1_000), (3, 3_000)] {
        cache.put(&Key::test(n), &a, &a_blob).unwrap();
        set_mtime(&cache.entry_path(&Key::test(n)), used);
    }
    let (b, b_blob) = layer(b"twenty bytes of blob");
    cache.put(&Key::test(2), &b, &b_blob).unwrap();
    set_mtime(&cache.entry_path(&Key::test(2)), 2_000);
    let blobs = cache.blobs.root().join("sha256");
    let (old_tmp, new_tmp) = (blobs.join(".tmp-old"), blobs.join(".tmp-new"));
    fs::write(&old_tmp, b"").unwrap();
    set_mtime(&old_tmp, 1_000);
    fs::write(&new_tmp, b"").unwrap();

    let pruned = cache.prune(25).unwrap();
    assert_eq!((pruned.removed_entries, pruned.removed_bytes), (2, 20));
    let now = cache.stats();
    assert_eq!((pruned.after.entries, pruned.after.bytes), (1, 10));
    assert_eq!((now.entries, now.bytes), (1, 10));
    assert_eq!(pruned.after.max_bytes, 25);
    assert!(cache.entry_path(&Key::test(3)).exists());
    assert!(cache.blobs.path(&a.descriptor.digest).exists());
    assert!(!cache.blobs.path(&b.descriptor.digest).exists());
    assert!(!old_tmp.exists() && new_tmp.exists());
}
