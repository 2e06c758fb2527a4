use super::*;

const SOURCE: &str = r#"<?xml version="1.0"?>
<!-- kept -->
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:o="http://schemas.dmtf.org/ovf/envelope/1" xmlns:vbox="http://www.virtualbox.org/ovf/machine">
  <References>
    <File o:href="a.qcow2"   o:id="file1" o:size="5" o:compression="gzip" o:chunkSize="7"/>
    <File o:id="file2" o:href="boot.iso"/>
  </References>
  <DiskSection>
    <Info>x</Info>
    <Disk o:capacity="2" o:capacityAllocationUnits="byte * 2^20" o:diskId="d1" o:fileRef="file1" o:format="urn:x" o:populatedSize="9" vbox:uuid='a"b'/>
  </DiskSection>
  <VirtualSystem o:id="vm"><Info>y</Info><File o:id="file1" o:href="not-touched"/></VirtualSystem>
</Envelope>
"#;

fn rewrite() -> Rewrite {
    Rewrite {
        source: SOURCE.into(),
        files: vec![
            FileEdit {
                id: "file1".into(),
                member: 0,
            },
            FileEdit {
                id: "file2".into(),
                member: 1,
            },
        ],
        disks: vec![DiskEdit {
            id: "d1".into(),
            member: 0,
            capacity: 2 << 20,
            populated: true,
        }],
    }
}

fn names() -> Vec<String> {
    vec!["a.vmdk".into(), "boot.iso".into()]
}

fn written(len: u64) -> Vec<Written> {
    vec![
        Written {
            len,
            populated: Some(len * 2),
        },
        Written {
            len: 3,
            populated: None,
        },
    ]
}

#[test]
fn file_and_disk_attributes_are_replaced_with_the_source_prefix() {
    let out = rewrite()
        .describe(&names(), &written(100), Form::Files)
        .unwrap();
    assert!(
        out.contains(r#"<File o:href="a.vmdk" o:id="file1" o:size="100"/>"#),
        "{out}"
    );
    assert!(
        out.contains(r#"<File o:id="file2" o:href="boot.iso" o:size="3"/>"#),
        "{out}"
    );
    let disk = format!(
        r#"<Disk o:capacity="2097152" o:capacityAllocationUnits="byte" o:diskId="d1" o:fileRef="file1" o:format="{VMDK_STREAM_FORMAT}" o:populatedSize="200" vbox:uuid='a"b'/>"#
    );
    assert!(out.contains(&disk), "{out}");
}

#[test]
fn everything_else_is_kept_byte_for_byte() {
    let out = rewrite()
        .describe(&names(), &written(100), Form::Files)
        .unwrap();
    let (head, _) = SOURCE.split_once("    <File o:href").unwrap();
    assert!(out.starts_with(head), "{out}");
    let (_, tail) = SOURCE.split_once("  </DiskSection>").unwrap();
    assert!(out.ends_with(tail), "{out}");
    assert!(out.contains(r#"<File o:id="file1" o:href="not-touched"/>"#));
}

#[test]
fn in_an_ova_the_length_does_not_depend_on_sizes() {
    let r = rewrite();
    let short = r.describe(&names(), &written(0), Form::Ova).unwrap();
    let long = r
        .describe(&names(), &written(u64::MAX / 2), Form::Ova)
        .unwrap();
    assert_eq!(short.len(), long.len());
}

#[test]
fn an_edit_without_its_element_is_an_error() {
    let mut r = rewrite();
    r.disks[0].id = "d9".into();
    let err = r.describe(&names(), &written(1), Form::Files).unwrap_err();
    assert!(err.to_string().contains("Disk `d9` was not found"), "{err}");
}

#[test]
fn missing_units_and_format_are_added() {
    let mut r = rewrite();
    r.source = r
        .source
        .replace(r#" o:capacityAllocationUnits="byte * 2^20""#, "");
    r.source = r.source.replace(r#" o:format="urn:x""#, "");
    let out = r.describe(&names(), &written(1), Form::Files).unwrap();
    assert!(
        out.contains(r#"o:capacity="2097152" o:capacityAllocationUnits="byte""#),
        "{out}"
    );
    assert!(
        out.contains(&format!(r#"o:format="{VMDK_STREAM_FORMAT}"/>"#)),
        "{out}"
    );
}
