/* vsprobe: runs one vSphere driver operation against a server and prints
 * the result as JSON, so shell tests can check every call of drivers/
 * against the test peer.  Exit 0 on success; 1 with the error on stderr
 * (and {"status":..,"error":..,"fault":..} on stdout). */
#include <event2/event.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <getopt.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/transport.h"
#include "drivers/vmdk.h"
#include "drivers/vsops.h"
#include "drivers/vsphere.h"
#include "engine/core/http.h"
#include "engine/core/log.h"
#include "engine/core/loop.h"
#include "engine/core/units.h"
#include "engine/core/util.h"

static struct vs_client *client;
static int exit_code = 1;
static char **args;
static int nargs;
static const char *cmd;
static const char *direct_root;
static int parallel = 4;
static size_t chunk = 1u << 20;
static int page_size = 100;
static int opt_memory, opt_quiesce;
static const char *opt_network;

static void
stop_loop(void)
{
	event_base_loopexit(loop_base(), NULL);
}

static void
print(json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT);

	puts(s);
	free(s);
	json_decref(o);
}

static void
fail_out(struct vs_out *out)
{
	print(json_pack("{s:s,s:s?,s:s?}", "status", vs_status_name(out->status), "error", out->error, "fault",
	    out->fault_type));
	fprintf(stderr, "vsprobe: %s\n", out->error ? out->error : "failed");
	exit_code = 1;
	stop_loop();
}

static json_t *
disks_json(const struct vs_disk *d, size_t n)
{
	json_t *arr = json_array();
	size_t i;

	for (i = 0; i < n; i++)
		json_array_append_new(arr, json_pack("{s:i,s:s?,s:I,s:s?,s:s?,s:i,s:i}", "key", d[i].key, "file",
		                               d[i].file, "capacity", (json_int_t)d[i].capacity, "mode", d[i].mode,
		                               "change_id", d[i].change_id, "controller_key", d[i].controller_key,
		                               "unit", d[i].unit));
	return arr;
}

static json_t *
vm_json(const struct vs_vm *vm)
{
	json_t *snaps = json_array(), *nics = json_array();
	size_t i;

	for (i = 0; i < vm->nsnapshots; i++)
		json_array_append_new(snaps, json_pack("{s:s,s:s?,s:b,s:s?}", "moref", vm->snapshots[i].moref, "name",
		                                 vm->snapshots[i].name, "quiesced", vm->snapshots[i].quiesced, "parent",
		                                 vm->snapshots[i].parent));
	for (i = 0; i < vm->nnics; i++)
		json_array_append_new(nics, json_pack("{s:s?,s:s?}", "type", vm->nics[i].type, "network", vm->nics[i].network));
	return json_pack("{s:s,s:s,s:s?,s:s?,s:s?,s:s?,s:s?,s:s?,s:s?,s:i,s:i,s:b,s:o,s:o,s:o,s:s?}", "name", vm->name,
	    "moref", vm->moref, "uuid", vm->uuid, "power", vm->power, "host", vm->host_name, "datacenter", vm->datacenter,
	    "datastore", vm->datastore, "guest_id", vm->guest_id, "version", vm->version, "cpus", vm->cpus, "memory_mb",
	    vm->memory_mb, "cbt", vm->cbt, "disks", disks_json(vm->disks, vm->ndisks), "snapshots", snaps, "nics", nics,
	    "current_snapshot", vm->current_snapshot);
}

static int upload_fd = -1;
static double idle_s;

static void
idle_over(evutil_socket_t fd, short what, void *arg)
{
	struct vs_stats st;

	vs_get_stats(client, &st);
	print(json_pack("{s:s,s:I,s:I,s:I}", "status", "ok", "keepalives", (json_int_t)st.keepalives, "logins",
	    (json_int_t)st.logins, "relogins", (json_int_t)st.relogins));
	exit_code = 0;
	stop_loop();
}

static void
idle_logged_in(struct vs_result *res, void *arg)
{
	struct timeval tv = { (long)idle_s, (long)((idle_s - (long)idle_s) * 1e6) };

	if (res->status != VS_OK) {
		fprintf(stderr, "vsprobe: %s\n", res->error);
		stop_loop();
		return;
	}
	event_base_once(loop_base(), -1, EV_TIMEOUT, idle_over, NULL, &tv);
}

static void
upload_done(void *arg, enum xfer_status st, const char *err)
{
	if (st != XFER_OK) {
		struct vs_out o = { 0 };

		o.status = st == XFER_TRANSIENT ? VS_UNREACHABLE : VS_FAULT;
		o.error = (char *)err;
		fail_out(&o);
		return;
	}
	print(json_pack("{s:s}", "status", "ok"));
	exit_code = 0;
	stop_loop();
}

static void
login_done(struct vs_result *res, void *arg)
{
	struct vs_out o = { 0 };

	if (res->status != VS_OK) {
		o.status = res->status;
		o.error = res->error;
		fail_out(&o);
		return;
	}
	print(json_pack("{s:s}", "status", "ok"));
	exit_code = 0;
	stop_loop();
}

/* after-insecure: a client that accepts any certificate logs in first and
 * keeps its connection; then the configured client logs in. */
static struct vs_client *insecure_client;

static void
insecure_logged_in(struct vs_result *res, void *arg)
{
	if (res->status != VS_OK) {
		login_done(res, arg);
		return;
	}
	vs_login(client, login_done, NULL);
}

/* ---- commands that need the inventory first ---- */

static struct vs_inventory inv;
static const struct vs_vm *target_vm;

static void after_inventory(void);

static void
inventory_done(struct vs_out *out, void *arg)
{
	if (out->status != VS_OK) {
		fail_out(out);
		return;
	}
	inv = *out->inv;
	memset(out->inv, 0, sizeof(*out->inv));
	after_inventory();
}

static void
simple_done(struct vs_out *out, void *arg)
{
	if (out->status != VS_OK) {
		fail_out(out);
		return;
	}
	print(json_pack("{s:s,s:s?}", "status", "ok", "moref", out->moref));
	exit_code = 0;
	stop_loop();
}

static void
file_done(struct vs_out *out, void *arg)
{
	if (out->status != VS_OK) {
		fail_out(out);
		return;
	}
	print(json_pack("{s:s,s:I}", "status", "ok", "bytes", (json_int_t)out->len));
	exit_code = 0;
	stop_loop();
}

static void
snapdisks_done(struct vs_out *out, void *arg)
{
	if (out->status != VS_OK) {
		fail_out(out);
		return;
	}
	print(json_pack("{s:s,s:o}", "status", "ok", "disks", disks_json(out->disks, out->ndisks)));
	exit_code = 0;
	stop_loop();
}

static void
changes_done(struct vs_out *out, void *arg)
{
	json_t *ext;
	uint64_t total = 0;
	size_t i;

	if (out->status != VS_OK) {
		fail_out(out);
		return;
	}
	ext = json_array();
	for (i = 0; i < out->nextents; i++) {
		json_array_append_new(ext, json_pack("[I,I]", (json_int_t)out->extents[i].start,
		                               (json_int_t)out->extents[i].length));
		total += out->extents[i].length;
	}
	print(json_pack("{s:s,s:o,s:I,s:I}", "status", "ok", "extents", ext, "pages", (json_int_t)out->pages, "bytes",
	    (json_int_t)total));
	exit_code = 0;
	stop_loop();
}

/* ---- read: descriptor, then the flat extent in order-hashed chunks ---- */

struct reader {
	struct disk *disk;
	EVP_MD_CTX *md;
	uint64_t size;
	uint64_t next_off;      /* next range to request */
	uint64_t hashed;        /* bytes hashed so far (in order) */
	struct slot {
		uint8_t *buf;
		uint64_t off;
		size_t len;
		int busy, ready;
	} *slots;
	char *extent;
	const char *transport;
	int failed;
} rd;

static void reader_pump(void);

static void
reader_chunk_done(void *arg, enum xfer_status st, const char *err)
{
	struct slot *s = arg;

	if (st != XFER_OK) {
		struct vs_out o = { 0 };

		o.status = st == XFER_TRANSIENT ? VS_UNREACHABLE : VS_FAULT;
		o.error = xstrdup(err ? err : "read failed");
		rd.failed = 1;
		fail_out(&o);
		free(o.error);
		return;
	}
	s->ready = 1;
	reader_pump();
}

static void
reader_pump(void)
{
	int i, progress = 1;

	if (rd.failed)
		return;
	while (progress) {
		progress = 0;
		for (i = 0; i < parallel; i++) {
			struct slot *s = &rd.slots[i];

			if (s->busy && s->ready && s->off == rd.hashed) {
				EVP_DigestUpdate(rd.md, s->buf, s->len);
				rd.hashed += s->len;
				s->busy = s->ready = 0;
				progress = 1;
			}
			if (!s->busy && rd.next_off < rd.size) {
				s->off = rd.next_off;
				s->len = rd.size - rd.next_off < chunk ? (size_t)(rd.size - rd.next_off) : chunk;
				rd.next_off += s->len;
				s->busy = 1;
				s->ready = 0;
				if (disk_read(rd.disk, s->off, s->len, s->buf, reader_chunk_done, s) == NULL) {
					fprintf(stderr, "vsprobe: read refused\n");
					stop_loop();
					return;
				}
			}
		}
	}
	if (rd.hashed == rd.size) {
		unsigned char dig[32];
		unsigned int dl = 0;
		char hex[65];

		EVP_DigestFinal_ex(rd.md, dig, &dl);
		for (i = 0; i < 32; i++)
			snprintf(hex + i * 2, 3, "%02x", dig[i]);
		print(json_pack("{s:s,s:s,s:I,s:s,s:s}", "status", "ok", "sha256", hex, "bytes", (json_int_t)rd.size,
		    "extent", rd.extent, "transport", rd.transport));
		exit_code = 0;
		stop_loop();
	}
}

static void
descriptor_done(struct vs_out *out, void *arg)
{
	struct vs_disk *disk = arg;
	struct vmdk_desc desc;
	char *err = NULL, *ds = NULL, *path = NULL, *dir, *slash, *extent_path;
	const char *flat;
	int i;

	if (out->status != VS_OK) {
		fail_out(out);
		return;
	}
	if (vmdk_parse(out->data, out->len, &desc, &err) != 0 || (flat = vmdk_flat_file(&desc, &err)) == NULL) {
		fprintf(stderr, "vsprobe: descriptor %s: %s\n", disk->file, err);
		free(err);
		stop_loop();
		return;
	}
	vs_split_ds_path(disk->file, &ds, &path);
	dir = xstrdup(path);
	slash = strrchr(dir, '/');
	if (slash != NULL)
		slash[1] = '\0';
	else
		dir[0] = '\0';
	extent_path = xasprintf("%s%s", dir, flat);
	rd.extent = xstrdup(extent_path);
	rd.size = disk->capacity;
	if (direct_root != NULL) {
		rd.disk = disk_open_direct(direct_root, extent_path, rd.size, 0, &err);
		rd.transport = "direct";
		if (rd.disk == NULL) {
			fprintf(stderr, "vsprobe: %s\n", err);
			free(err);
			stop_loop();
			goto out;
		}
	} else {
		rd.disk = disk_open_https(client, target_vm->datacenter, ds, extent_path, rd.size);
		rd.transport = "https";
	}
	rd.md = EVP_MD_CTX_new();
	EVP_DigestInit_ex(rd.md, EVP_sha256(), NULL);
	rd.slots = xcalloc((size_t)parallel, sizeof(*rd.slots));
	for (i = 0; i < parallel; i++)
		rd.slots[i].buf = xmalloc(chunk);
	reader_pump();
out:
	vmdk_free(&desc);
	free(ds);
	free(path);
	free(dir);
	free(extent_path);
}

static struct vs_disk *read_disk;
static struct vs_out read_disks_keep;

static void
read_with_disks(struct vs_disk *disks, size_t n)
{
	char *ds = NULL, *path = NULL;
	int idx = atoi(args[3]);

	if (idx < 0 || (size_t)idx >= n) {
		fprintf(stderr, "vsprobe: no disk %d\n", idx);
		stop_loop();
		return;
	}
	read_disk = &disks[idx];
	if (vs_split_ds_path(read_disk->file, &ds, &path) != 0) {
		fprintf(stderr, "vsprobe: bad disk file %s\n", read_disk->file);
		stop_loop();
		return;
	}
	vs_get_file(client, target_vm->datacenter, ds, path, descriptor_done, read_disk);
	free(ds);
	free(path);
}

static void
read_snapdisks_done(struct vs_out *out, void *arg)
{
	if (out->status != VS_OK) {
		fail_out(out);
		return;
	}
	/* Keep the disks: the callback's vs_out is freed on return. */
	read_disks_keep.disks = out->disks;
	read_disks_keep.ndisks = out->ndisks;
	out->disks = NULL;
	out->ndisks = 0;
	read_with_disks(read_disks_keep.disks, read_disks_keep.ndisks);
}

static uint64_t *caps;

static void
after_inventory(void)
{
	if (strcmp(cmd, "inventory") == 0) {
		json_t *vms = json_array(), *hosts = json_array(), *dss = json_array(), *dcs = json_array();
		size_t i;

		for (i = 0; i < inv.nvms; i++)
			json_array_append_new(vms, vm_json(&inv.vms[i]));
		for (i = 0; i < inv.nhosts; i++)
			json_array_append_new(hosts, json_pack("{s:s,s:s?,s:s?,s:s?}", "moref", inv.hosts[i].moref, "name",
			                                 inv.hosts[i].name, "datacenter", inv.hosts[i].datacenter, "pool",
			                                 inv.hosts[i].resource_pool));
		for (i = 0; i < inv.ndatastores; i++)
			json_array_append_new(dss, json_pack("{s:s,s:s?,s:I,s:I,s:s?,s:s?,s:i}", "moref", inv.datastores[i].moref,
			                               "name", inv.datastores[i].name, "capacity",
			                               (json_int_t)inv.datastores[i].capacity, "free",
			                               (json_int_t)inv.datastores[i].free, "url", inv.datastores[i].url, "type",
			                               inv.datastores[i].type, "vmfs_major", inv.datastores[i].vmfs_major));
		for (i = 0; i < inv.ndcs; i++)
			json_array_append_new(dcs, json_pack("{s:s,s:s?}", "moref", inv.dcs[i].moref, "name", inv.dcs[i].name));
		print(json_pack("{s:s,s:I,s:o,s:o,s:o,s:o}", "status", "ok", "pages", (json_int_t)inv.pages, "datacenters",
		    dcs, "hosts", hosts, "datastores", dss, "vms", vms));
		exit_code = 0;
		stop_loop();
		return;
	}
	if (strcmp(cmd, "create-vm") == 0) {
		/* create-vm NAME DATASTORE HOST CAP[,CAP...] */
		const struct vs_host *h = NULL;
		struct vs_vm_spec spec;
		size_t i, n = 0;
		char *list, *tok, *save = NULL;
		struct vs_controller ctrl = { 1000, 0, "ParaVirtualSCSIController", VS_CTRL_PVSCSI, NULL, 0 };
		struct vs_disk *dk = NULL;
		struct vs_nic nic;

		if (nargs < 5) {
			fprintf(stderr, "usage: create-vm NAME DATASTORE HOST CAPS\n");
			stop_loop();
			return;
		}
		for (i = 0; i < inv.nhosts; i++)
			if (strcmp(inv.hosts[i].name, args[3]) == 0)
				h = &inv.hosts[i];
		if (h == NULL) {
			fprintf(stderr, "vsprobe: no host %s\n", args[3]);
			stop_loop();
			return;
		}
		list = xstrdup(args[4]);
		for (tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
			caps = xreallocarray(caps, n + 1, sizeof(*caps));
			caps[n++] = strtoull(tok, NULL, 10);
		}
		free(list);
		memset(&spec, 0, sizeof(spec));
		spec.name = args[1];
		for (i = 0; i < inv.ndcs; i++)
			if (strcmp(inv.dcs[i].name, h->datacenter) == 0)
				spec.folder = inv.dcs[i].vm_folder;
		spec.resource_pool = h->resource_pool;
		spec.host = h->moref;
		spec.datastore = args[2];
		spec.cpus = 2;
		spec.memory_mb = 1024;
		/* One paravirtual SCSI controller, the disks at units 0, 1, ... (7 is the controller's). */
		dk = xcalloc(n ? n : 1, sizeof(*dk));
		for (i = 0; i < n; i++) {
			dk[i].capacity = caps[i];
			dk[i].controller_key = 1000;
			dk[i].unit = (int)(i < 7 ? i : i + 1);
		}
		memset(&nic, 0, sizeof(nic));
		nic.type = "VirtualVmxnet3";
		nic.network = (char *)opt_network;
		nic.start_connected = 1;
		spec.controllers = &ctrl;
		spec.ncontrollers = 1;
		spec.disks = dk;
		spec.ndisks = n;
		spec.nics = &nic;
		spec.nnics = opt_network ? 1 : 0;
		vs_create_vm(client, &spec, simple_done, NULL);
		free(dk);
		return;
	}
	target_vm = vs_inventory_vm(&inv, args[1]);
	if (target_vm == NULL) {
		fprintf(stderr, "vsprobe: no VM named %s\n", args[1]);
		stop_loop();
		return;
	}
	if (strcmp(cmd, "vm") == 0) {
		print(vm_json(target_vm));
		exit_code = 0;
		stop_loop();
	} else if (strcmp(cmd, "cbt") == 0 && nargs >= 3) {
		vs_enable_cbt(client, target_vm->moref, strcmp(args[2], "on") == 0, simple_done, NULL);
	} else if (strcmp(cmd, "snapshot") == 0 && nargs >= 3) {
		vs_create_snapshot(client, target_vm->moref, args[2], "vmferry probe", opt_memory, opt_quiesce, simple_done, NULL);
	} else if (strcmp(cmd, "revert") == 0 && nargs >= 3) {
		vs_revert_snapshot(client, args[2], simple_done, NULL);
	} else if (strcmp(cmd, "power") == 0 && nargs >= 3) {
		vs_power(client, target_vm->moref, args[2], simple_done, NULL);
	} else if (strcmp(cmd, "destroy") == 0) {
		vs_destroy(client, target_vm->moref, simple_done, NULL);
	} else if (strcmp(cmd, "changes") == 0 && nargs >= 5) {
		/* changes VM SNAP DISKINDEX CHANGEID */
		int idx = atoi(args[3]);

		if (idx < 0 || (size_t)idx >= target_vm->ndisks) {
			fprintf(stderr, "vsprobe: no disk %d\n", idx);
			stop_loop();
			return;
		}
		vs_query_changes(client, target_vm->moref, args[2], target_vm->disks[idx].key, args[4],
		    target_vm->disks[idx].capacity, changes_done, NULL);
	} else if (strcmp(cmd, "read") == 0 && nargs >= 4) {
		/* read VM SNAP|current DISKINDEX */
		if (strcmp(args[2], "current") == 0)
			read_with_disks(((struct vs_vm *)target_vm)->disks, target_vm->ndisks);
		else
			vs_snapshot_disks(client, args[2], read_snapdisks_done, NULL);
	} else {
		fprintf(stderr, "vsprobe: bad command or arguments: %s\n", cmd);
		stop_loop();
	}
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "thumbprint", required_argument, NULL, 't' }, { "insecure", no_argument, NULL, 'k' },
		{ "ca", required_argument, NULL, 'C' }, { "user", required_argument, NULL, 'u' },
		{ "password", required_argument, NULL, 'p' }, { "retry-window", required_argument, NULL, 'r' },
		{ "direct", required_argument, NULL, 'd' }, { "parallel", required_argument, NULL, 'P' },
		{ "chunk", required_argument, NULL, 'c' }, { "page", required_argument, NULL, 'g' },
		{ "memory", no_argument, NULL, 'm' }, { "quiesce", no_argument, NULL, 'q' },
		{ "network", required_argument, NULL, 'n' }, { "verbose", no_argument, NULL, 'v' },
		{ "keepalive", required_argument, NULL, 'K' },
		{ NULL, 0, NULL, 0 },
	};
	struct vs_config cfg;
	int ch;

	memset(&cfg, 0, sizeof(cfg));
	cfg.name = "probe";
	cfg.username = "user";
	cfg.password = "pass";
	log_set_level(LOG_WARN);
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 't':
			if (units_parse_thumbprint(optarg, cfg.tls.pin) != 0) {
				fprintf(stderr, "vsprobe: bad thumbprint\n");
				return 2;
			}
			cfg.tls.has_pin = 1;
			break;
		case 'k': cfg.tls.insecure = 1; break;
		case 'C': cfg.tls.ca_file = optarg; break;
		case 'u': cfg.username = optarg; break;
		case 'p': cfg.password = optarg; break;
		case 'r': cfg.retry_window_s = atof(optarg); break;
		case 'd': direct_root = optarg; break;
		case 'P': parallel = atoi(optarg) > 0 ? atoi(optarg) : 1; break;
		case 'c': chunk = (size_t)strtoull(optarg, NULL, 10); break;
		case 'g': page_size = atoi(optarg); break;
		case 'm': opt_memory = 1; break;
		case 'q': opt_quiesce = 1; break;
		case 'n': opt_network = optarg; break;
		case 'v': log_set_level(LOG_DEBUG); break;
		case 'K': cfg.keepalive_s = atof(optarg); break;
		default: return 2;
		}
	}
	if (argc - optind < 2) {
		fprintf(stderr, "usage: vsprobe [options] URL COMMAND [ARGS]\n");
		return 2;
	}
	cfg.url = argv[optind];
	cmd = argv[optind + 1];
	args = argv + optind + 1;
	nargs = argc - optind - 1;
	if (chunk == 0)
		chunk = 1u << 20;

	loop_init();
	http_init(loop_base());
	client = vs_client_new(&cfg);
	if (strcmp(cmd, "login") == 0) {
		vs_login(client, login_done, NULL);
	} else if (strcmp(cmd, "after-insecure") == 0) {
		struct vs_config icfg = cfg;

		memset(&icfg.tls, 0, sizeof(icfg.tls));
		icfg.tls.insecure = 1;
		icfg.name = "insecure";
		insecure_client = vs_client_new(&icfg);
		vs_login(insecure_client, insecure_logged_in, NULL);
	} else if (strcmp(cmd, "idle") == 0 && nargs >= 2) {
		/* Log in, stay idle for N seconds, report the session counters. */
		idle_s = atof(args[1]);
		vs_login(client, idle_logged_in, NULL);
	} else if (strcmp(cmd, "snapdisks") == 0 && nargs >= 2) {
		vs_snapshot_disks(client, args[1], snapdisks_done, NULL);
	} else if (strcmp(cmd, "remove-snapshot") == 0 && nargs >= 2) {
		vs_remove_snapshot(client, args[1], simple_done, NULL);
	} else if (strcmp(cmd, "upload") == 0 && nargs >= 5) {
		/* upload DC DS PATH LOCALFILE */
		int fd = open(args[4], O_RDONLY);
		struct stat sb;

		if (fd < 0 || fstat(fd, &sb) != 0) {
			fprintf(stderr, "vsprobe: %s: cannot open\n", args[4]);
			return 1;
		}
		upload_fd = fd;
		disk_upload_https(client, args[1], args[2], args[3], fd, (uint64_t)sb.st_size, upload_done, NULL);
	} else if (strcmp(cmd, "get-file") == 0 && nargs >= 4) {
		vs_get_file(client, args[1], args[2], args[3], file_done, NULL);
	} else {
		vs_get_inventory(client, page_size, inventory_done, NULL);
	}
	event_base_dispatch(loop_base());

	if (rd.disk != NULL)
		disk_close(rd.disk);
	if (rd.slots != NULL) {
		for (int i = 0; i < parallel; i++)
			free(rd.slots[i].buf);
		free(rd.slots);
	}
	if (rd.md != NULL)
		EVP_MD_CTX_free(rd.md);
	free(rd.extent);
	free(caps);
	{
		size_t i;

		for (i = 0; i < read_disks_keep.ndisks; i++) {
			free(read_disks_keep.disks[i].label);
			free(read_disks_keep.disks[i].file);
			free(read_disks_keep.disks[i].mode);
			free(read_disks_keep.disks[i].change_id);
			free(read_disks_keep.disks[i].uuid);
		}
		free(read_disks_keep.disks);
	}
	if (upload_fd >= 0)
		close(upload_fd);
	vs_inventory_free(&inv);
	vs_client_free(client);
	vs_client_free(insecure_client);
	http_shutdown();
	loop_free();
	return exit_code;
}
