/* How each target disk is written (SPEC §6): the choice of transport per
 * disk (a datastore mount, hot-add, a sparse delta over HTTPS, the whole
 * upload), the hot-add attachments around a pass, and the sink a pass
 * writes into. */
#include <jansson.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/cowd.h"
#include "drivers/transport.h"
#include "engine/config.h"
#include "engine/core/log.h"
#include "engine/core/util.h"
#include "engine/jobs/job.h"
#include "engine/jobs/runtime.h"
#include "engine/jobs/target.h"

const char *
target_via_name(enum target_via v)
{
	switch (v) {
	case TARGET_VIA_DIRECT: return "direct";
	case TARGET_VIA_HOTADD: return "hotadd";
	case TARGET_VIA_DELTA: return "delta";
	case TARGET_VIA_WHOLE: return "whole";
	default: return "undecided";
	}
}

enum target_via
target_via_choose(const struct target_via_in *in, char **why)
{
	char *cowd_no = NULL, *delta_no;
	enum target_via v;

	*why = NULL;
	if (in->mount != NULL) {
		*why = xasprintf("datastore %s is mounted on the node at %s (lan_free): written in place", in->ds,
		    in->mount);
		return TARGET_VIA_DIRECT;
	}
	if (in->was == TARGET_VIA_WHOLE) {
		*why = xstrdup("its copy so far is in the staging image: uploaded whole at cutover, the downtime grows "
		               "with the disk's size");
		return TARGET_VIA_WHOLE;
	}
	if (in->hotadd_no == NULL) {
		*why = xasprintf("attached to the appliance VM (hot-add): the hypervisor writes datastore %s's format",
		    in->ds);
		return TARGET_VIA_HOTADD;
	}
	if (!in->deltas_no && cowd_capacity_check(in->capacity, &cowd_no) == 0) {
		*why = xasprintf("no hot-add (%s): a vmfsSparse delta per pass over HTTPS", in->hotadd_no);
		return TARGET_VIA_DELTA;
	}
	delta_no = in->deltas_no && in->deltas_why != NULL ? xstrdup(in->deltas_why)
	    : in->deltas_no ? xasprintf("datastore %s's snapshot deltas cannot be written: not vmfsSparse", in->ds)
	                    : xasprintf("no sparse delta: %s", cowd_no);
	v = in->whole_allowed ? TARGET_VIA_WHOLE : TARGET_VIA_NONE;
	*why = xasprintf("no hot-add (%s); %s; %s", in->hotadd_no, delta_no,
	    v == TARGET_VIA_WHOLE ? "uploaded whole at cutover: the downtime grows with the disk's size, not with the "
	                            "changes"
	                          : in->whole_no != NULL ? in->whole_no
	                                                 : "the rule forbids the whole upload (whole_upload: false)");
	free(delta_no);
	free(cowd_no);
	return v;
}

/* ---- before and after a pass ---- */

static const char *
mount_of(struct target *t, size_t i)
{
	const struct cfg_rule *r = target_rule(t);

	if (r == NULL || !r->options.lan_free || t->no_direct)
		return NULL;
	return rt_mount_of(r->target.platform, t->st->disks[i].ds);
}

static uint64_t
capacity_of(struct target *t, size_t i)
{
	return t->src_caps != NULL ? t->src_caps[i] : 0;
}

/* Decide disk i given why hot-add cannot write it (NULL: it can).  0, or
 * -1 when nothing may write it (the job has failed). */
static int
decide(struct target *t, size_t i, const char *hotadd_no)
{
	struct target_disk *d = &t->st->disks[i];
	const struct cfg_rule *r = target_rule(t);
	struct target_via_in in = {
		.ds = d->ds,
		.mount = mount_of(t, i),
		.hotadd_no = hotadd_no,
		.deltas_no = t->st->write == TARGET_WRITE_WHOLE,
		.deltas_why = t->st->write_why,
		.capacity = capacity_of(t, i),
		.whole_allowed = r->options.whole_upload && !t->whole_never,
		.whole_no = !t->whole_never ? NULL
		            : t->whole_no != NULL ? t->whole_no
		                                  : "restore points live in the target's chain, which a whole upload cannot make",
		.was = d->via,
	};
	enum target_via v;
	char *why;

	v = target_via_choose(&in, &why);
	if (v == TARGET_VIA_NONE) {
		rt_fail(t->j, "disk %zu cannot be written: %s", i, why);
		free(why);
		return -1;
	}
	if (v != d->via || !str_eq(why, d->via_why)) {
		job_log(t->j, v == TARGET_VIA_WHOLE ? LOG_WARN : LOG_INFO, "disk %zu is written through %s: %s", i,
		    target_via_name(v), why);
		if (d->via != TARGET_VIA_NONE && v != d->via && t->via_changed != NULL)
			t->via_changed(t->j, i, (enum target_via)d->via, v);
		d->via = (uint8_t)v;
		free(d->via_why);
		d->via_why = why;
	} else {
		free(why);
	}
	return 0;
}

static void
attached(struct hotadd *h)
{
	struct target *t = (struct target *)((char *)h - offsetof(struct target, hot));
	size_t i, hot = 0;

	for (i = 0; i < t->st->ndisks; i++) {
		if (t->st->disks[i].via == TARGET_VIA_HOTADD && h->d[i].dev == NULL &&
		    decide(t, i, h->d[i].no ? h->d[i].no : "its device was not found") != 0)
			return;
		hot += t->st->disks[i].via == TARGET_VIA_HOTADD;
	}
	t->save(t->j);
	if (hot == 0) {
		/* Every attach failed (and nothing stayed attached). */
		target_deltas_check(t, t->writes_then);
		return;
	}
	t->writes_then(t);
}

static void
appliance_known(struct hotadd *h)
{
	struct target *t = (struct target *)((char *)h - offsetof(struct target, hot));
	size_t i, want = 0;

	hotadd_size(h, t->st->ndisks);
	for (i = 0; i < t->st->ndisks; i++) {
		free(h->d[i].file);
		h->d[i].file = xstrdup(t->st->disks[i].file);
		h->d[i].capacity = capacity_of(t, i);
		free(h->d[i].no);
		h->d[i].no = NULL;
		/* Within a pass the choice stands (a refused attach is not
		 * asked again before the next pass). */
		if ((t->redecide || t->st->disks[i].via == TARGET_VIA_NONE) && decide(t, i, h->no) != 0)
			return;
		h->d[i].want = t->st->disks[i].via == TARGET_VIA_HOTADD;
		want += h->d[i].want;
	}
	/* Recorded before any attach: after a crash the record says whether
	 * the appliance VM may hold a disk of this job. */
	t->save(t->j);
	if (want == 0) {
		/* Nothing attached: the target VM can be snapshotted. */
		target_deltas_check(t, t->writes_then);
		return;
	}
	hotadd_attach(h, attached);
}

void
target_writes_begin(struct target *t, int redecide, void (*then)(struct target *t))
{
	const struct cfg_rule *r = target_rule(t);
	size_t i, need = 0;

	t->writes_then = then;
	t->redecide = redecide;
	for (i = 0; i < t->st->ndisks; i++)
		need += mount_of(t, i) == NULL && t->st->disks[i].via != TARGET_VIA_WHOLE;
	if (need == 0) {
		free(t->hot.no);
		t->hot.no = xstrdup("not needed");
		hotadd_size(&t->hot, t->st->ndisks);
		appliance_known(&t->hot);
		return;
	}
	hotadd_find(&t->hot, r->target.datacenter, appliance_known);
}

static void
detached(struct hotadd *h)
{
	struct target *t = (struct target *)((char *)h - offsetof(struct target, hot));

	t->writes_then(t);
}

void
target_writes_end(struct target *t, void (*then)(struct target *t))
{
	size_t i, hot = 0;

	t->writes_then = then;
	for (i = 0; i < t->st->ndisks; i++)
		hot += t->st->disks[i].via == TARGET_VIA_HOTADD;
	if (hot == 0) {
		/* No disk goes through the appliance VM, nor went since the
		 * record was saved: nothing of this job can be attached. */
		then(t);
		return;
	}
	hotadd_size(&t->hot, t->st->ndisks);
	for (i = 0; i < t->st->ndisks; i++) {
		free(t->hot.d[i].file);
		t->hot.d[i].file = t->st->disks[i].file ? xstrdup(t->st->disks[i].file) : NULL;
	}
	hotadd_detach(&t->hot, detached);
}

int
target_in_place(const struct target *t, size_t i)
{
	return t->st->disks[i].via == TARGET_VIA_DIRECT || t->st->disks[i].via == TARGET_VIA_HOTADD;
}

struct disk *
target_open_sink(struct target *t, size_t i, const char *staging, uint64_t size, char **err)
{
	struct disk *d = NULL;
	char *e = NULL;
	int en = 0;

	*err = NULL;
	switch (t->st->disks[i].via) {
	case TARGET_VIA_DIRECT:
		if ((d = disk_open_direct(mount_of(t, i), t->st->disks[i].flat, size, 1, &e)) == NULL)
			*err = xasprintf("disk %zu: target through %s: %s", i, mount_of(t, i), e);
		break;
	case TARGET_VIA_HOTADD:
		if (i >= t->hot.n || t->hot.d[i].dev == NULL)
			*err = xasprintf("disk %zu: not attached to the appliance VM", i);
		else if ((d = disk_open_device(t->hot.d[i].dev, size, &e)) == NULL)
			*err = xasprintf("disk %zu: its hot-add device: %s", i, e);
		break;
	default:
		if (staging == NULL)
			*err = xasprintf("node temp_dir cannot be written");
		else if ((d = disk_open_file(staging, size, 1, &e, &en)) == NULL)
			*err = xasprintf("node temp_dir cannot be written: %s", e);
		break;
	}
	free(e);
	return d;
}

json_t *
target_vias_json(const struct target_state *st)
{
	json_t *a = json_array();
	size_t i;

	for (i = 0; i < st->ndisks; i++)
		json_array_append_new(a, json_pack("{s:i,s:s,s:s?}", "disk", (int)i, "via",
		    target_via_name((enum target_via)st->disks[i].via), "why", st->disks[i].via_why));
	return a;
}
