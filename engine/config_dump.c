/* The effective configuration as stable, secret-free text: vmferryd -n -p
 * and the golden tests. */
#include "engine/config_int.h"

#include <stdio.h>

#include "engine/core/units.h"
#include "engine/core/util.h"

/* ---- dump ------------------------------------------------------------ */

static void
dump_days(FILE *out, uint8_t days)
{
	static const char *const dn[] = { "mon", "tue", "wed", "thu", "fri", "sat", "sun" };
	int i, first = 1;

	for (i = 0; i < 7; i++) {
		if (days & (1u << i)) {
			fprintf(out, "%s%s", first ? "" : ",", dn[i]);
			first = 0;
		}
	}
}

static void
dump_hhmm(FILE *out, int m)
{
	fprintf(out, "%02d:%02d", m / 60, m % 60);
}

static void
dump_windows(FILE *out, const struct cfg_window *w, size_t n, const char *origin)
{
	char sz[32];
	size_t i;

	if (n == 0) {
		fprintf(out, "  bandwidth: unlimited%s\n", origin);
		return;
	}
	fprintf(out, "  bandwidth:%s\n", origin);
	for (i = 0; i < n; i++) {
		fputs("    - ", out);
		dump_days(out, w[i].days);
		fputc(' ', out);
		dump_hhmm(out, w[i].from_min);
		fputc('-', out);
		dump_hhmm(out, w[i].to_min);
		if (w[i].limit_bps == 0) {
			fputs(" paused (limit 0)\n", out);
		} else {
			units_format_size(w[i].limit_bps, sz, sizeof(sz));
			fprintf(out, " limit %llu B/s (%s/s)\n", (unsigned long long)w[i].limit_bps, sz);
		}
	}
}

static void
dump_schedule(FILE *out, const struct cfg_schedule *s, int with_mode, const char *origin)
{
	char buf[64];
	size_t i, k;

	if (!s->set) {
		fprintf(out, "  schedule: none%s\n", origin);
		return;
	}
	fprintf(out, "  schedule:%s\n", origin);
	for (i = 0; i < s->nentries; i++) {
		const struct cfg_sched_entry *e = &s->entries[i];

		fputs("    - ", out);
		if (with_mode)
			fprintf(out, "%s ", cfg_mode_names[e->mode]);
		switch (e->type) {
		case SCHED_ONCE:
			cfg_once_civil(e->once_at, buf, sizeof(buf));
			fprintf(out, "once at %s\n", buf);
			continue;
		case SCHED_HOURLY:
			fputs("hourly every ", out);
			if (e->interval_min >= 60)
				fprintf(out, "%dh", e->interval_min / 60);
			if (e->interval_min % 60)
				fprintf(out, "%dm", e->interval_min % 60);
			fputs(" from", out);
			break;
		case SCHED_DAILY:
			fputs("daily at", out);
			break;
		case SCHED_WEEKLY:
			fputs("weekly on ", out);
			dump_days(out, e->days);
			fputs(" at", out);
			break;
		case SCHED_MONTHLY:
			fprintf(out, "monthly on day %d at", e->day);
			break;
		default:
			fputs("?", out);
			break;
		}
		for (k = 0; k < e->ntimes; k++) {
			fputs(k ? ", " : " ", out);
			dump_hhmm(out, e->times[k]);
		}
		fputc('\n', out);
	}
}

static void
dump_options(FILE *out, const struct cfg_options *o, unsigned kinds, uint32_t written,
    const struct cfg_template *t)
{
	size_t i;

	fputs("  options:\n", out);
	for (i = 0; i < ARRAY_LEN(cfg_optdefs); i++) {
		const struct optdef *d = &cfg_optdefs[i];
		const char *origin = "";
		int v = cfg_opt_get(o, d->bit);

		if (!(d->kinds & kinds))
			continue;
		if (!(written & d->bit))
			origin = (t != NULL && (t->options.set & d->bit)) ? " (template)" : " (default)";
		if (d->bit == CFG_OPT_CUTOVER)
			fprintf(out, "    %s: %s%s\n", d->name, cfg_cutover_names[v], origin);
		else
			fprintf(out, "    %s: %s%s\n", d->name, v ? "true" : "false", origin);
	}
}

static const char *
origin_of(const struct cfg_rule *r, uint32_t bit, int from_template)
{
	if (r->written & bit)
		return "";
	return from_template ? " (template)" : " (default)";
}

void
config_dump(const struct config *c, FILE *out)
{
	char a[32], tp[THUMBPRINT_STRLEN];
	size_t i, k;

	fputs("system:", out);
	if (c->system.present)
		fprintf(out, " # %s:%d\n", c->system.loc.file, c->system.loc.line);
	else
		fputs(" # defaults\n", out);
	fprintf(out, "  max_tasks: %d\n", c->system.max_tasks);
	fprintf(out, "  max_tasks_per_host: %d\n", c->system.max_tasks_per_host);
	units_format_size(c->system.transfer_buffer, a, sizeof(a));
	fprintf(out, "  transfer_buffer: %llu (%s)\n", (unsigned long long)c->system.transfer_buffer, a);
	units_format_size(c->system.host_buffer_cap, a, sizeof(a));
	fprintf(out, "  host_buffer_cap: %llu (%s)\n", (unsigned long long)c->system.host_buffer_cap, a);
	if (c->system.http.enabled)
		fprintf(out, "  http: listen %s%s, token_file %s\n", c->system.http.listen,
		    c->system.http.loopback ? " (loopback)" : "",
		    c->system.http.token_file ? c->system.http.token_file : "none");

	for (i = 0; i < c->nplatforms; i++) {
		const struct cfg_platform *p = c->platforms[i];

		fprintf(out, "\nplatform %s: # %s:%d\n", p->name, p->loc.file, p->loc.line);
		fprintf(out, "  type: %s\n", p->type);
		fprintf(out, "  url: %s\n", p->url);
		fprintf(out, "  username: %s\n", p->username);
		fprintf(out, "  password_source: %s\n", p->password_source);
		if (p->has_thumbprint) {
			units_format_thumbprint(p->thumbprint, tp);
			fprintf(out, "  tls: thumbprint %s\n", tp);
		} else if (p->ca_file_name != NULL) {
			fprintf(out, "  tls: ca_file %s\n", p->ca_file_name);
		} else if (p->insecure) {
			fputs("  tls: insecure (certificate not verified)\n", out);
		} else {
			fputs("  tls: system CAs\n", out);
		}
		if (p->nmounts == 0) {
			fputs("  datastore_mounts: none\n", out);
		} else {
			fputs("  datastore_mounts:\n", out);
			for (k = 0; k < p->nmounts; k++)
				fprintf(out, "    %s: %s\n", p->mounts[k].datastore, p->mounts[k].path);
		}
	}
	for (i = 0; i < c->nnodes; i++) {
		const struct cfg_node *nd = c->nodes[i];

		fprintf(out, "\nnode %s: # %s:%d\n", nd->name, nd->loc.file, nd->loc.line);
		fprintf(out, "  repository: %s\n", nd->repository);
		fprintf(out, "  temp_dir: %s\n", nd->temp_dir);
		if (nd->hotadd_off)
			fputs("  hotadd: false\n", out);
		else
			fprintf(out, "  hotadd: { vm: %s, uuid: %s, devices: %s }\n",
			    nd->appliance_vm ? nd->appliance_vm : "(by uuid)",
			    nd->appliance_uuid ? nd->appliance_uuid : "(this node's BIOS UUID)",
			    nd->hotadd_devices ? nd->hotadd_devices : "/dev/disk/by-id");
	}
	for (i = 0; i < c->ntemplates; i++) {
		const struct cfg_template *t = c->templates[i];

		fprintf(out, "\ntemplate %s: # %s:%d\n", t->name, t->loc.file, t->loc.line);
		fputs("  options:", out);
		if (t->options.set == 0)
			fputs(" none", out);
		fputc('\n', out);
		for (k = 0; k < ARRAY_LEN(cfg_optdefs); k++) {
			const struct optdef *d = &cfg_optdefs[k];
			int v = cfg_opt_get(&t->options, d->bit);

			if (!(t->options.set & d->bit))
				continue;
			if (d->bit == CFG_OPT_CUTOVER)
				fprintf(out, "    %s: %s\n", d->name, cfg_cutover_names[v]);
			else
				fprintf(out, "    %s: %s\n", d->name, v ? "true" : "false");
		}
		if (t->windows_set)
			dump_windows(out, t->windows, t->nwindows, "");
		else
			fputs("  bandwidth: not set\n", out);
		if (t->schedule.set)
			dump_schedule(out, &t->schedule, 1, "");
		else
			fputs("  schedule: not set\n", out);
		if (t->keep_history)
			fprintf(out, "  keep_history: %d\n", t->keep_history);
		else
			fputs("  keep_history: not set\n", out);
	}
	for (i = 0; i < c->nrules; i++) {
		const struct cfg_rule *r = c->rules[i];
		const struct cfg_template *t = r->template_name ? config_template(c, r->template_name) : NULL;

		fprintf(out, "\n%s %s: # %s:%d\n", cfg_kind_name(r->kind), r->name, r->loc.file,
		    r->loc.line);
		fprintf(out, "  source: %s\n", r->source_platform);
		fputs("  vms:", out);
		for (k = 0; k < r->nvms; k++)
			fprintf(out, "%s%s", k ? ", " : " ", r->vms[k]);
		fputc('\n', out);
		fprintf(out, "  node: %s\n", r->node);
		if (r->kind != CFG_BACKUP) {
			fprintf(out, "  target: %s datacenter=%s host=%s datastore=%s\n", r->target.platform,
			    r->target.datacenter, r->target.host, r->target.datastore);
			fprintf(out, "  target name: %s%s\n", r->target.name ? r->target.name : "{vm}",
			    r->target.name ? "" : " (default)");
			if (r->target.folder != NULL)
				fprintf(out, "  target folder: %s\n", r->target.folder);
			if (r->target.resource_pool != NULL)
				fprintf(out, "  target resource_pool: %s\n", r->target.resource_pool);
		} else {
			fprintf(out, "  repository: %s%s\n", r->repository ? r->repository : "-",
			    (r->written & CFG_W_REPOSITORY) ? "" : " (node)");
			if (r->key_file != NULL)
				fprintf(out, "  encryption: key_file %s\n", r->key_file);
		}
		fprintf(out, "  template: %s\n", r->template_name ? r->template_name : "none");
		dump_options(out, &r->options, 1u << r->kind, r->options.set, t);
		dump_windows(out, r->windows, r->nwindows,
		    origin_of(r, CFG_W_WINDOWS, t && t->windows_set));
		if (r->kind != CFG_MIGRATION)
			dump_schedule(out, &r->schedule, r->kind == CFG_BACKUP,
			    origin_of(r, CFG_W_SCHEDULE, t && t->schedule.set));
		if (r->kind == CFG_REPLICATION)
			fprintf(out, "  keep_history: %d%s\n", r->keep_history,
			    origin_of(r, CFG_W_KEEP_HISTORY, t && t->keep_history));
		if (r->kind == CFG_BACKUP)
			fprintf(out, "  retention: %d%s\n", r->retention, origin_of(r, CFG_W_RETENTION, 0));
		fprintf(out, "  digest: %016llx\n", (unsigned long long)r->digest);
	}
}
