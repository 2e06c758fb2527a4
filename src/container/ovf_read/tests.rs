use super::*;
use crate::container::guest_os;
use crate::container::ovf::{Adapter, DiskFile, Machine, Target};

fn read(text: &str) -> Descriptor {
    read_descriptor(text.as_bytes(), "t.ovf").unwrap()
}

fn kiln_machine(target: Target) -> Machine {
    Machine {
        name: "app".into(),
        description: Some("An <app>".into()),
        product: None,
        eula: Some("Be nice.\nSecond line".into()),
        os: *guest_os("ubuntu-64").unwrap(),
        cpus: 4,
        memory_mib: 3072,
        efi: true,
        target,
        hardware: None,
        capacity_units: false,
        adapters: vec![Adapter {
            network: "VM Network".into(),
            model: None,
            mac: None,
            connected: true,
        }],
        properties: Vec::new(),
        sections: Vec::new(),
        options: Vec::new(),
        usb: None,
        video_kib: None,
        secure_boot: false,
    }
}

#[test]
fn kiln_descriptors_read_back() {
    let disks = [DiskFile {
        href: "app-disk1.vmdk".into(),
        size: 1234,
        capacity: 8 << 30,
        size_width: 20,
        bus: None,
    }];
    let text = kiln_machine(Target::Vmware).render(&disks, &[]);
    let d = read(&text);
    assert!(d.findings.is_empty(), "{:?}", d.findings);
    let env = &d.envelope;
    assert_eq!(env.files[0].size, Some(1234));
    assert_eq!(env.disks[0].capacity_bytes, Some(8 << 30));
    let system = env.systems()[0];
    assert_eq!(system.hardware[0].system_types, ["vmx-13"]);
    let cpu = system.hardware[0]
        .items
        .iter()
        .find(|i| i.resource_type == Some(3));
    assert_eq!(cpu.and_then(|c| c.quantity), Some(4));
    assert_eq!(system.common.eulas, ["Be nice.\nSecond line"]);
    assert_eq!(system.common.annotation.as_deref(), Some("An <app>"));
    assert_eq!(system.hardware[0].settings[0].key, "firmware");
}

#[test]
fn ovf_09_is_refused() {
    let err = read_descriptor(
        br#"<Envelope xmlns="http://www.vmware.com/schema/ovf/1/envelope"/>"#,
        "t.ovf",
    )
    .unwrap_err();
    assert!(matches!(err, DescriptorError::Ovf09 { .. }));
}

#[test]
fn a_root_that_is_not_an_envelope_is_refused() {
    let err = read_descriptor(b"<html/>", "t.ovf").unwrap_err();
    assert!(err.to_string().contains("not an OVF Envelope"), "{err}");
}

#[test]
fn ovf_1_0_generic_sections_and_unprefixed_attributes_are_read() {
    let d = read(
        r#"<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <References><File href="a.vmdk" id="f1" size="10"/></References>
  <Section xsi:type="ovf:NetworkSection_Type"><Info>n</Info><Network ovf:name="NAT" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"/></Section>
</Envelope>"#,
    );
    assert_eq!(d.envelope.files[0].href, "a.vmdk");
    assert_eq!(d.envelope.networks[0].name, "NAT");
    assert!(
        d.findings
            .iter()
            .any(|f| f.code == "ovf.unqualified-attribute")
    );
}

#[test]
fn capacity_units_in_vendor_spellings_are_read() {
    let d = read(
        r#"<ovf:Envelope xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"><ovf:DiskSection>
  <ovf:Disk ovf:diskId="a" ovf:capacity="2" ovf:capacityAllocationUnits="GigaBytes"/>
  <ovf:Disk ovf:diskId="b" ovf:capacity="512"/>
  <ovf:Disk ovf:diskId="c" ovf:capacity="3" ovf:capacityAllocationUnits="byte * 2^20" ovf:populatedSize="7"/>
</ovf:DiskSection></ovf:Envelope>"#,
    );
    let caps: Vec<Option<u64>> = d.envelope.disks.iter().map(|d| d.capacity_bytes).collect();
    assert_eq!(caps, [Some(2 << 30), Some(512), Some(3 << 20)]);
    assert_eq!(d.envelope.disks[2].populated_size, Some(7));
    assert_eq!(d.findings.len(), 1, "{:?}", d.findings);
}

#[test]
fn bad_capacity_units_are_an_error() {
    let d = read(
        r#"<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"><DiskSection>
  <Disk ovf:diskId="a" ovf:capacity="2" ovf:capacityAllocationUnits="hertz"/></DiskSection></Envelope>"#,
    );
    assert_eq!(d.envelope.disks[0].capacity_bytes, None);
    assert_eq!(d.findings[0].code, "disk.capacity-units");
    assert_eq!(d.findings[0].place.as_deref(), Some("t.ovf:2"));
}

#[test]
fn collections_storage_items_and_properties_are_read() {
    let d = read(
        r#"<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/2" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/2"
  xmlns:sasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_StorageAllocationSettingData.xsd"
  xmlns:vbox="http://www.virtualbox.org/ovf/machine">
 <VirtualSystemCollection ovf:id="vapp"><Info>i</Info>
  <ProductSection><Info>p</Info><Product>P</Product><Category>Net</Category>
   <Property ovf:key="ip" ovf:type="string" ovf:userConfigurable="true"><Label>IP</Label></Property></ProductSection>
  <VirtualSystem ovf:id="vm1"><Info>v</Info>
   <VirtualHardwareSection><Info>h</Info>
    <StorageItem><sasd:HostResource>ovf:/disk/d1</sasd:HostResource><sasd:InstanceID>5</sasd:InstanceID><sasd:ResourceType>17</sasd:ResourceType></StorageItem>
   </VirtualHardwareSection>
   <vbox:Machine ovf:required="false"><Info>m</Info></vbox:Machine>
  </VirtualSystem>
 </VirtualSystemCollection></Envelope>"#,
    );
    let env = &d.envelope;
    assert_eq!(env.version, OvfVersion::V2);
    let system = env.systems()[0];
    let item = &system.hardware[0].items[0];
    assert_eq!(
        (item.class, item.resource_type),
        (ItemClass::Storage, Some(17))
    );
    assert_eq!(item.host_resources, ["ovf:/disk/d1"]);
    assert_eq!(item.odd_namespaces.len(), 1);
    assert_eq!(system.common.extensions[0].name, "Machine");
    assert!(!system.common.extensions[0].required);
    let p = env.properties()[0];
    assert_eq!(
        (p.key.as_str(), p.category.as_deref(), p.user_configurable),
        ("ip", Some("Net"), true)
    );
    assert!(d.findings.iter().any(|f| f.code == "ovf.namespace"));
}

#[test]
fn a_nic_address_is_its_mac() {
    let d = read(
        r#"<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:r="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData">
 <VirtualSystem ovf:id="v"><VirtualHardwareSection>
  <Item><r:Address>00:50:56:aa:bb:cc</r:Address><r:Connection>LAN</r:Connection><r:ResourceType>10</r:ResourceType></Item>
 </VirtualHardwareSection></VirtualSystem></Envelope>"#,
    );
    let item = &d.envelope.systems()[0].hardware[0].items[0];
    assert_eq!(item.mac_address.as_deref(), Some("00:50:56:aa:bb:cc"));
    assert_eq!(item.connections, ["LAN"]);
}
