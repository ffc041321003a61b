/* What a hostile or broken vSphere server may send, and what the driver
 * makes of it: replies that would take too much memory, absurd sizes and
 * wrong types in VM properties, changed areas that are malformed, out of
 * order or far too many. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "drivers/soap.h"
#include "drivers/vsops.h"
#include "engine/core/util.h"

#define ENV_OPEN                                                                                            \
	"<?xml version=\"1.0\"?><soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" " \
	"xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><soapenv:Body>"
#define ENV_CLOSE "</soapenv:Body></soapenv:Envelope>"

static char *
read_file(const char *rel, size_t *len)
{
	const char *src = getenv("VMFERRY_SRC");
	char *path = xasprintf("%s/%s", src ? src : ".", rel);
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = xmalloc((size_t)n + 1);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	free(path);
	*len = (size_t)n;
	return buf;
}

/* An envelope whose body holds `count` copies of `item`. */
static char *
flood(const char *item, size_t count, size_t *len)
{
	struct sbuf b;
	size_t i;

	sbuf_init(&b);
	sbuf_adds(&b, ENV_OPEN "<RetrievePropertiesExResponse xmlns=\"urn:vim25\"><returnval>");
	for (i = 0; i < count; i++)
		sbuf_adds(&b, item);
	sbuf_adds(&b, "</returnval></RetrievePropertiesExResponse>" ENV_CLOSE);
	*len = b.len;
	return sbuf_steal(&b);
}

static void
test_dense_markup_is_refused(void **state)
{
	struct soap_reply r;
	char *err = NULL, *body;
	size_t len, before;

	/* 15 MiB of empty elements: under the size limit, but as a tree it
	 * would take ~500 MiB. */
	body = flood("<x/>", (15u << 20) / 4, &len);
	assert_true(len < SOAP_REPLY_MAX);
	soap_parse_reply("<a/>", 4, &r, &err); /* libxml2 set up */
	free(err);
	before = soap_xml_memory();
	assert_int_equal(soap_parse_reply(body, len, &r, &err), -1);
	assert_non_null(strstr(err, "more than 64 MiB of memory"));
	free(err);
	/* Everything libxml2 took for the attempt is back. */
	assert_true(soap_xml_memory() <= before + 4096);
	free(body);

	/* The same shape, smaller: parses. */
	body = flood("<x/>", 100000, &len);
	assert_int_equal(soap_parse_reply(body, len, &r, &err), 0);
	assert_non_null(r.body_child);
	soap_reply_free(&r);
	free(body);
}

static void
test_large_reply_is_refused(void **state)
{
	struct soap_reply r;
	char *err = NULL, *body = xcalloc(1, SOAP_REPLY_MAX + 2);

	memset(body, ' ', SOAP_REPLY_MAX + 1);
	assert_int_equal(soap_parse_reply(body, SOAP_REPLY_MAX + 1, &r, &err), -1);
	assert_non_null(strstr(err, "reply larger than"));
	free(err);
	free(body);
}

static void
test_real_reply_parses(void **state)
{
	struct soap_reply r;
	struct vs_vm vm;
	char *err = NULL;
	size_t len;
	char *body = read_file("t/fuzz/corpus/fuzz_soap/vm_all_props.xml", &len);

	assert_int_equal(soap_parse_reply(body, len, &r, &err), 0);
	assert_int_equal(vs_parse_vm_object(xml_child(xml_child(r.body_child, "returnval"), "objects"), &vm), 0);
	assert_null(vm.problem);
	assert_string_equal(vm.name, "web01");
	vs_vm_free(&vm);
	soap_reply_free(&r);
	free(body);
}

/* Datastores as the peer poses them (VMFS 6 and 5, NFS 3 and 4.1, vcsim's
 * own "OTHER"): summary.type, and the VMFS major version from the
 * polymorphic info, asked for whole; absurd versions are unknown (0). */
static void
parse_datastores(const char *file, const char *want)
{
	struct soap_reply r;
	struct sbuf b;
	char *err = NULL;
	size_t len;
	char *body = read_file(file, &len);
	xmlNode *obj;

	assert_int_equal(soap_parse_reply(body, len, &r, &err), 0);
	sbuf_init(&b);
	for (obj = xml_child(xml_child(r.body_child, "returnval"), "objects"); obj != NULL; obj = xml_next(obj, "objects")) {
		struct vs_datastore d;

		if (vs_parse_datastore_object(obj, &d) != 0) {
			sbuf_adds(&b, "(none) ");
			continue;
		}
		sbuf_printf(&b, "%s:%s:%d ", d.name ? d.name : "-", d.type ? d.type : "-", d.vmfs_major);
		vs_datastore_free(&d);
	}
	if (strcmp(b.data, want) != 0)
		fail_msg("%s: \"%s\", want \"%s\"", file, b.data, want);
	sbuf_free(&b);
	soap_reply_free(&r);
	free(body);
}

static void
test_datastore_types(void **state)
{
	parse_datastores("t/fuzz/corpus/fuzz_soap/datastore_types.xml",
	    "ds0:OTHER:0 ds6:VMFS:6 ds5:VMFS:5 nfs3:NFS:0 nfs4:NFS41:0 ");
	parse_datastores("t/fuzz/corpus/fuzz_soap/datastore_absurd.xml",
	    "big:VMFS:0 v256:VMFS:0 neg:VMFS:0 text:VMFS:0 novmfs:VMFS:0 nasvmfs:NFS:6 vsan:vsan:0 -::0 -:-:0 (none) ");
}

/* A VM object with one disk; capacity, file and CPU elements given as XML. */
static void
vm_with(const char *disk_inner, const char *cpus, struct vs_vm *vm)
{
	struct soap_reply r;
	char *err = NULL;
	char *body = xasprintf(ENV_OPEN
	    "<RetrievePropertiesExResponse xmlns=\"urn:vim25\"><returnval><objects><obj type=\"VirtualMachine\">vm-1</obj>"
	    "<propSet><name>name</name><val>web01</val></propSet>"
	    "<propSet><name>config.hardware.numCPU</name><val>%s</val></propSet>"
	    "<propSet><name>config.hardware.device</name><val xsi:type=\"ArrayOfVirtualDevice\">"
	    "<VirtualDevice xsi:type=\"VirtualDisk\"><deviceInfo><label>Hard disk 1</label></deviceInfo>%s"
	    "</VirtualDevice></val></propSet></objects></returnval></RetrievePropertiesExResponse>" ENV_CLOSE,
	    cpus, disk_inner);

	assert_int_equal(soap_parse_reply(body, strlen(body), &r, &err), 0);
	assert_int_equal(vs_parse_vm_object(xml_child(xml_child(r.body_child, "returnval"), "objects"), vm), 0);
	soap_reply_free(&r);
	free(body);
}

#define FILE_OK "<backing xsi:type=\"VirtualDiskFlatVer2BackingInfo\"><fileName>[ds0] web01/web01.vmdk</fileName></backing>"

static void
expect_problem(const char *disk_inner, const char *cpus, const char *want)
{
	struct vs_vm vm;

	vm_with(disk_inner, cpus, &vm);
	if (want == NULL) {
		assert_null(vm.problem);
	} else {
		assert_non_null(vm.problem);
		if (strstr(vm.problem, want) == NULL)
			fail_msg("problem \"%s\" does not name \"%s\"", vm.problem, want);
	}
	vs_vm_free(&vm);
}

static void
test_vm_absurd_values(void **state)
{
	struct vs_vm vm;

	vm_with("<key>2000</key>" FILE_OK "<capacityInBytes>50397184</capacityInBytes>", "2", &vm);
	assert_null(vm.problem);
	assert_int_equal(vm.disks[0].capacity, 50397184);
	assert_int_equal(vm.cpus, 2);
	vs_vm_free(&vm);
	vm_with("<key>2000</key>" FILE_OK "<capacityInKB>4096</capacityInKB>", "1", &vm);
	assert_null(vm.problem);
	assert_int_equal(vm.disks[0].capacity, 4096 * 1024);
	vs_vm_free(&vm);

	expect_problem("<key>2000</key>" FILE_OK "<capacityInBytes>9223372036854775808</capacityInBytes>", "2",
	    "capacityInBytes \"9223372036854775808\" is not a size");
	expect_problem("<key>2000</key>" FILE_OK "<capacityInBytes>18446744073709551615</capacityInBytes>", "2",
	    "is not a size from 1 byte to 64 TiB");
	expect_problem("<key>2000</key>" FILE_OK "<capacityInBytes>-1</capacityInBytes>", "2", "\"-1\"");
	expect_problem("<key>2000</key>" FILE_OK "<capacityInBytes>lots</capacityInBytes>", "2", "\"lots\"");
	expect_problem("<key>2000</key>" FILE_OK "<capacityInBytes>0</capacityInBytes>", "2", "\"0\"");
	expect_problem("<key>2000</key>" FILE_OK "<capacityInBytes> 12</capacityInBytes>", "2", "\" 12\"");
	/* kilobytes that overflow once multiplied */
	expect_problem("<key>2000</key>" FILE_OK "<capacityInKB>18014398509481985</capacityInKB>", "2", "capacityInKB");
	expect_problem("<key>2000</key>" FILE_OK, "2", "no capacity");
	expect_problem("<key>2000</key><capacityInBytes>1024</capacityInBytes>", "2", "no backing file name");
	expect_problem("<key>two</key>" FILE_OK "<capacityInBytes>1024</capacityInBytes>", "2", "no valid device key");
	expect_problem("<key>2000</key>" FILE_OK "<capacityInBytes>1024</capacityInBytes>", "lots",
	    "numCPU \"lots\" is not a number");
	expect_problem("<key>2000</key>" FILE_OK "<capacityInBytes>1024</capacityInBytes>", "0", "numCPU \"0\"");
	/* a long value is cut short in the message, control bytes hidden */
	expect_problem("<key>2000</key>" FILE_OK
	               "<capacityInBytes>1234567890123456789012345678901234567890123456789&#10;</capacityInBytes>",
	    "2", "\"1234567890123456789012345678901234567890\"...");
}

/* Every kind of device a copy needs, and the properties around them. */
static void
test_vm_hardware(void **state)
{
	struct soap_reply r;
	struct vs_vm vm, copy;
	struct vs_vm_spec spec;
	struct vs_drive bad;
	char *err = NULL, *why;
	char *body = xasprintf(ENV_OPEN
	    "<RetrievePropertiesExResponse xmlns=\"urn:vim25\"><returnval><objects><obj type=\"VirtualMachine\">vm-1</obj>"
	    "<propSet><name>name</name><val>old01</val></propSet>"
	    "<propSet><name>parent</name><val type=\"Folder\">group-v7</val></propSet>"
	    "<propSet><name>config.firmware</name><val>efi</val></propSet>"
	    "<propSet><name>config.bootOptions</name><val><efiSecureBootEnabled>true</efiSecureBootEnabled></val></propSet>"
	    "<propSet><name>config.hardware.numCPU</name><val>4</val></propSet>"
	    "<propSet><name>config.hardware.numCoresPerSocket</name><val>2</val></propSet>"
	    "<propSet><name>config.extraConfig</name><val>"
	    "<OptionValue><key>guestinfo.note</key><value xsi:type=\"xsd:string\">no</value></OptionValue>"
	    "<OptionValue><key>disk.EnableUUID</key><value xsi:type=\"xsd:string\">TRUE</value></OptionValue></val></propSet>"
	    "<propSet><name>config.hardware.device</name><val xsi:type=\"ArrayOfVirtualDevice\">"
	    "<VirtualDevice xsi:type=\"VirtualSIOController\"><key>400</key><busNumber>0</busNumber></VirtualDevice>"
	    "<VirtualDevice xsi:type=\"VirtualAHCIController\"><key>15000</key><busNumber>0</busNumber></VirtualDevice>"
	    "<VirtualDevice xsi:type=\"VirtualNVMEController\"><key>31000</key><busNumber>1</busNumber></VirtualDevice>"
	    "<VirtualDevice xsi:type=\"VirtualLsiLogicSASController\"><key>1000</key>"
	    "<slotInfo xsi:type=\"VirtualDevicePciBusSlotInfo\"><pciSlotNumber>160</pciSlotNumber></slotInfo>"
	    "<busNumber>2</busNumber><sharedBus>noSharing</sharedBus></VirtualDevice>"
	    "<VirtualDevice xsi:type=\"VirtualDisk\"><key>2000</key>" FILE_OK "<controllerKey>31000</controllerKey>"
	    "<unitNumber>3</unitNumber><capacityInBytes>1048576</capacityInBytes></VirtualDevice>"
	    "<VirtualDevice xsi:type=\"VirtualCdrom\"><key>16000</key><controllerKey>15000</controllerKey>"
	    "<unitNumber>1</unitNumber></VirtualDevice>"
	    "<VirtualDevice xsi:type=\"VirtualFloppy\"><key>8000</key><controllerKey>400</controllerKey>"
	    "<unitNumber>0</unitNumber></VirtualDevice>"
	    "<VirtualDevice xsi:type=\"VirtualE1000e\"><key>4000</key><backing><deviceName>LAN</deviceName></backing>"
	    "<connectable><startConnected>false</startConnected></connectable>"
	    "<slotInfo xsi:type=\"VirtualDevicePciBusSlotInfo\"><pciSlotNumber>192</pciSlotNumber></slotInfo>"
	    "<addressType>manual</addressType><macAddress>00:50:56:00:00:01</macAddress></VirtualDevice>"
	    "</val></propSet></objects></returnval></RetrievePropertiesExResponse>" ENV_CLOSE);

	assert_int_equal(soap_parse_reply(body, strlen(body), &r, &err), 0);
	assert_int_equal(vs_parse_vm_object(xml_child(xml_child(r.body_child, "returnval"), "objects"), &vm), 0);
	soap_reply_free(&r);
	free(body);
	assert_null(vm.problem);
	assert_string_equal(vm.folder, "group-v7");
	assert_string_equal(vm.firmware, "efi");
	assert_int_equal(vm.secure_boot, 1);
	assert_int_equal(vm.cores_per_socket, 2);
	assert_int_equal(vm.nextra, 1);  /* guestinfo is not a boot key */
	assert_string_equal(vm.extra[0].key, "disk.EnableUUID");
	assert_int_equal(vm.ncontrollers, 4);
	assert_string_equal(vs_ctrl_kind_name(vm.controllers[1].kind), "ahci");
	assert_string_equal(vs_ctrl_kind_name(vm.controllers[2].kind), "nvme");
	assert_string_equal(vs_ctrl_kind_name(vm.controllers[3].kind), "lsilogic-sas");
	assert_int_equal(vm.controllers[3].bus, 2);
	assert_int_equal(vm.controllers[3].pci_slot, 160);
	assert_int_equal(vm.disks[0].controller_key, 31000);
	assert_int_equal(vm.disks[0].unit, 3);
	assert_int_equal(vm.ncdroms, 1);
	assert_int_equal(vm.cdroms[0].controller_key, 15000);
	assert_int_equal(vm.nfloppies, 1);
	assert_int_equal(vm.nnics, 1);
	assert_string_equal(vs_nic_model(vm.nics[0].type), "e1000e");
	assert_string_equal(vm.nics[0].mac, "00:50:56:00:00:01");
	assert_string_equal(vm.nics[0].address_type, "manual");
	assert_int_equal(vm.nics[0].pci_slot, 192);
	assert_int_equal(vm.nics[0].start_connected, 0);

	/* A copy holds the same; a spec of it can be created as it is. */
	vs_vm_dup(&vm, &copy);
	vs_vm_free(&vm);
	memset(&spec, 0, sizeof(spec));
	spec.controllers = copy.controllers;
	spec.ncontrollers = copy.ncontrollers;
	spec.disks = copy.disks;
	spec.ndisks = copy.ndisks;
	spec.cdroms = copy.cdroms;
	spec.ncdroms = copy.ncdroms;
	spec.floppies = copy.floppies;
	spec.nfloppies = copy.nfloppies;
	assert_null(vs_vm_spec_problem(&spec));
	/* A drive on a controller the VM does not have, or on a taken unit. */
	bad = (struct vs_drive){ 16001, 201, 0 };
	spec.cdroms = &bad;
	spec.ncdroms = 1;
	why = vs_vm_spec_problem(&spec);
	assert_non_null(why);
	assert_non_null(strstr(why, "CD-ROM 0 is on controller 201, which the VM does not have"));
	free(why);
	bad = (struct vs_drive){ 16001, 31000, 3 };
	why = vs_vm_spec_problem(&spec);
	assert_non_null(why);
	assert_non_null(strstr(why, "disk 0 and CD-ROM 0 are both at unit 3 of controller 31000"));
	free(why);
	vs_vm_free(&copy);
}

/* A QueryChangedDiskAreas returnval from its inner XML. */
static int
changes(const char *inner, uint64_t offset, uint64_t capacity, struct vs_extent **ext, size_t *n, uint64_t *next,
    char **err)
{
	struct soap_reply r;
	char *body = xasprintf(ENV_OPEN "<QueryChangedDiskAreasResponse xmlns=\"urn:vim25\"><returnval>%s</returnval>"
	                                "</QueryChangedDiskAreasResponse>" ENV_CLOSE,
	    inner);
	int rc;

	assert_int_equal(soap_parse_reply(body, strlen(body), &r, err), 0);
	rc = vs_parse_changes(xml_child(r.body_child, "returnval"), offset, capacity, ext, n, next, err);
	soap_reply_free(&r);
	free(body);
	return rc;
}

static void
test_changes_malformed_area(void **state)
{
	struct vs_extent *ext = NULL;
	size_t n = 0;
	uint64_t next = 0;
	char *err = NULL;

	/* Skipping the bad area would leave it uncopied. */
	assert_int_equal(changes("<startOffset>0</startOffset><length>1000</length>"
	                         "<changedArea><start>0</start><length>10</length></changedArea>"
	                         "<changedArea><start>ten</start><length>10</length></changedArea>",
	                     0, 1000, &ext, &n, &next, &err),
	    -1);
	assert_non_null(strstr(err, "start \"ten\""));
	free(err);
	free(ext);
	ext = NULL;
	n = 0;
	assert_int_equal(changes("<startOffset>0</startOffset><length>1000</length>"
	                         "<changedArea><start>5</start></changedArea>",
	                     0, 1000, &ext, &n, &next, &err),
	    -1);
	free(err);
	free(ext);
}

static void
test_changes_out_of_order(void **state)
{
	struct vs_extent *ext = NULL;
	size_t n = 0;
	uint64_t next = 0, gap = 0;
	char *err = NULL;

	/* Out of order and overlapping: nothing may be lost, the list ends
	 * sorted (the copy's checkpoint is an offset). */
	assert_int_equal(changes("<startOffset>0</startOffset><length>1000</length>"
	                         "<changedArea><start>500</start><length>100</length></changedArea>"
	                         "<changedArea><start>0</start><length>10</length></changedArea>"
	                         "<changedArea><start>550</start><length>100</length></changedArea>"
	                         "<changedArea><start>5</start><length>2</length></changedArea>"
	                         "<changedArea><start>990</start><length>99999</length></changedArea>",
	                     0, 1000, &ext, &n, &next, &err),
	    0);
	assert_int_equal(next, 1000);
	vs_extents_normalize(ext, &n, 1000, &gap);
	assert_int_equal(gap, 0);
	assert_int_equal(n, 3);
	assert_int_equal(ext[0].start, 0);
	assert_int_equal(ext[0].length, 10);
	assert_int_equal(ext[1].start, 500);
	assert_int_equal(ext[1].length, 150);
	assert_int_equal(ext[2].start, 990);
	assert_int_equal(ext[2].length, 10); /* clipped to the disk */
	free(ext);
}

static void
test_extents_cap_merges(void **state)
{
	size_t n = 3000000, i, k, max = 1u << 20;
	struct vs_extent *ext = xcalloc(n, sizeof(*ext));
	uint64_t gap = 0;

	/* One byte changed every two: merging copies the bytes between too,
	 * never fewer than were asked for. */
	for (i = 0; i < n; i++) {
		ext[i].start = 2 * (uint64_t)i;
		ext[i].length = 1;
	}
	vs_extents_normalize(ext, &n, max, &gap);
	assert_true(n <= max);
	assert_true(gap >= 64 * 1024);
	for (i = 1; i < n; i++)
		assert_true(ext[i].start > ext[i - 1].start + ext[i - 1].length);
	for (i = 0, k = 0; i < 3000000; i += 997) {
		uint64_t o = 2 * (uint64_t)i;

		while (k < n && ext[k].start + ext[k].length <= o)
			k++;
		assert_true(k < n && ext[k].start <= o);
	}
	free(ext);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dense_markup_is_refused),
		cmocka_unit_test(test_large_reply_is_refused),
		cmocka_unit_test(test_real_reply_parses),
		cmocka_unit_test(test_datastore_types),
		cmocka_unit_test(test_vm_absurd_values),
		cmocka_unit_test(test_vm_hardware),
		cmocka_unit_test(test_changes_malformed_area),
		cmocka_unit_test(test_changes_out_of_order),
		cmocka_unit_test(test_extents_cap_merges),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
