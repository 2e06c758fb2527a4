//! raw: sparse in, sparse out, identical bytes.

use crate::util::*;

#[test]
fn sparse_raw_round_trips_and_stays_sparse() {
    let d = Dir::new();
    let src = sparse_raw(&d.path("src.raw"), 64 << 20, 40, 1);
    d.kiln_ok(&["convert", "-O", "raw", "src.raw", "out.raw"]);
    check_image("raw", None, &d.path("out.raw"), Some(&src), &[]);
    let blocks = |p: &str| std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(d.path(p)).unwrap());
    assert!(blocks("out.raw") <= blocks("src.raw"), "output allocates more than the source");
}

#[test]
fn one_tib_sparse_raw_converts_without_writing_data() {
    let d = Dir::new();
    let f = std::fs::File::create(d.path("big.raw")).unwrap();
    f.set_len(1 << 40).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"kiln", 1 << 39).unwrap();
    d.kiln_ok(&["convert", "-O", "raw", "big.raw", "out.raw"]);
    let meta = std::fs::metadata(d.path("out.raw")).unwrap();
    assert_eq!(meta.len(), 1 << 40);
    assert!(std::os::unix::fs::MetadataExt::blocks(&meta) <= 64, "holes were written");
    let out = std::fs::File::open(d.path("out.raw")).unwrap();
    let mut buf = [0u8; 4];
    std::os::unix::fs::FileExt::read_exact_at(&out, &mut buf, 1 << 39).unwrap();
    assert_eq!(&buf, b"kiln");
}

#[test]
fn create_raw_makes_a_hole_of_the_requested_size() {
    let d = Dir::new();
    d.kiln_ok(&["create", "-f", "raw", "x.raw", "1G"]);
    let meta = std::fs::metadata(d.path("x.raw")).unwrap();
    assert_eq!(meta.len(), 1 << 30);
    check_image("raw", None, &d.path("x.raw"), None, &["--virtual-size", "1073741824"]);
}
