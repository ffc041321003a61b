#include "drivers/vmdk.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/vsops.h"
#include "engine/core/util.h"

#define VMDK_MAX_DESCRIPTOR (64 * 1024)
#define VMDK_MAX_EXTENTS 1024

static char *
unquote(const char *s, size_t n)
{
	while (n > 0 && isspace((unsigned char)*s)) {
		s++;
		n--;
	}
	while (n > 0 && isspace((unsigned char)s[n - 1]))
		n--;
	if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
		s++;
		n -= 2;
	}
	return xstrndup(s, n);
}

/* RW 131072 VMFS "web01-flat.vmdk" [offset] */
static int
parse_extent(const char *line, struct vmdk_extent *e)
{
	const char *p = line, *q;
	char *end;
	size_t n;

	memset(e, 0, sizeof(*e));
	n = strcspn(p, " \t");
	if (n == 0 || n >= sizeof(e->access))
		return -1;
	memcpy(e->access, p, n);
	p += n;
	while (*p == ' ' || *p == '\t')
		p++;
	if (!isdigit((unsigned char)*p))
		return -1;
	errno = 0;
	e->sectors = strtoull(p, &end, 10);
	if (errno != 0)
		return -1;
	p = end;
	while (*p == ' ' || *p == '\t')
		p++;
	n = strcspn(p, " \t");
	if (n == 0 || n >= sizeof(e->type))
		return -1;
	memcpy(e->type, p, n);
	p += n;
	while (*p == ' ' || *p == '\t')
		p++;
	if (strcmp(e->type, "ZERO") == 0)
		return *p == '\0' ? 0 : -1;
	if (*p != '"' || (q = strchr(p + 1, '"')) == NULL || q == p + 1)
		return -1;
	e->file = xstrndup(p + 1, (size_t)(q - p - 1));
	p = q + 1;
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p != '\0') {
		errno = 0;
		e->offset = strtoull(p, &end, 10);
		while (*end == ' ' || *end == '\t')
			end++;
		if (errno != 0 || *end != '\0' || !isdigit((unsigned char)*p)) {
			free(e->file);
			e->file = NULL;
			return -1;
		}
	}
	return 0;
}

/* CID=fffffffe: 1 to 8 hex digits (no sign, no 0x). */
static int
parse_cid(const char *v, uint32_t *out)
{
	size_t n = strspn(v, "0123456789abcdefABCDEF");

	if (n == 0 || n > 8 || v[n] != '\0')
		return -1;
	*out = (uint32_t)strtoul(v, NULL, 16);
	return 0;
}

int
vmdk_parse(const char *text, size_t len, struct vmdk_desc *out, char **err)
{
	size_t pos = 0;
	int lineno = 0;

	memset(out, 0, sizeof(*out));
	*err = NULL;
	if (len > VMDK_MAX_DESCRIPTOR) {
		*err = xasprintf("descriptor larger than %d bytes", VMDK_MAX_DESCRIPTOR);
		return -1;
	}
	if (memchr(text, '\0', len) != NULL) {
		*err = xstrdup("not a text descriptor (binary data; a sparse VMDK with an embedded descriptor?)");
		return -1;
	}
	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
		char *line = xstrndup(text + pos, n), *p = line, *eq;
		size_t l;

		pos += n + (nl ? 1 : 0);
		lineno++;
		while (*p == ' ' || *p == '\t')
			p++;
		l = strlen(p);
		while (l > 0 && (p[l - 1] == '\r' || p[l - 1] == ' ' || p[l - 1] == '\t'))
			p[--l] = '\0';
		if (*p == '\0' || *p == '#') {
			free(line);
			continue;
		}
		if (strncmp(p, "RW ", 3) == 0 || strncmp(p, "RDONLY ", 7) == 0 || strncmp(p, "NOACCESS ", 9) == 0) {
			struct vmdk_extent e;

			if (out->nextents >= VMDK_MAX_EXTENTS || parse_extent(p, &e) != 0) {
				*err = xasprintf("line %d: malformed extent: %.80s", lineno, p);
				free(line);
				vmdk_free(out);
				return -1;
			}
			out->extents = xreallocarray(out->extents, out->nextents + 1, sizeof(*out->extents));
			out->extents[out->nextents++] = e;
		} else if ((eq = strchr(p, '=')) != NULL) {
			char *key = unquote(p, (size_t)(eq - p));

			if (strcmp(key, "createType") == 0) {
				free(out->create_type);
				out->create_type = unquote(eq + 1, strlen(eq + 1));
			} else if (strcmp(key, "parentFileNameHint") == 0) {
				free(out->parent_hint);
				out->parent_hint = unquote(eq + 1, strlen(eq + 1));
			} else if (strcmp(key, "CID") == 0 || strcmp(key, "parentCID") == 0) {
				/* A CID that is not hex is left unset: only deltas
				 * need one, and vmdk_delta_file says so. */
				char *v = unquote(eq + 1, strlen(eq + 1));

				if (key[0] == 'C')
					out->has_cid = parse_cid(v, &out->cid) == 0;
				else
					out->has_parent_cid = parse_cid(v, &out->parent_cid) == 0;
				free(v);
			}
			free(key);
		} else {
			*err = xasprintf("line %d: not a descriptor line: %.80s", lineno, p);
			free(line);
			vmdk_free(out);
			return -1;
		}
		free(line);
	}
	if (out->create_type == NULL) {
		*err = xstrdup("no createType: not a VMDK descriptor");
		vmdk_free(out);
		return -1;
	}
	if (out->nextents == 0) {
		*err = xstrdup("the descriptor lists no extent");
		vmdk_free(out);
		return -1;
	}
	return 0;
}

void
vmdk_free(struct vmdk_desc *d)
{
	size_t i;

	for (i = 0; i < d->nextents; i++)
		free(d->extents[i].file);
	free(d->extents);
	free(d->create_type);
	free(d->parent_hint);
	memset(d, 0, sizeof(*d));
}

const char *
vmdk_flat_file(const struct vmdk_desc *d, char **err)
{
	const struct vmdk_extent *e;

	*err = NULL;
	if (d->nextents != 1) {
		*err = xasprintf("disk has %zu extents; only single-extent flat disks are read", d->nextents);
		return NULL;
	}
	e = &d->extents[0];
	if (strcmp(e->type, "VMFS") != 0 && strcmp(e->type, "FLAT") != 0) {
		*err = xasprintf("extent type %s (createType %s) is not a flat disk", e->type, d->create_type);
		return NULL;
	}
	if (e->offset != 0 || e->file == NULL || !file_name_is_safe(e->file)) {
		*err = xasprintf("extent file %s at offset %llu cannot be read as a flat disk", e->file ? e->file : "?",
		    (unsigned long long)e->offset);
		return NULL;
	}
	return e->file;
}

const char *
vmdk_delta_file(const struct vmdk_desc *d, char **err)
{
	const struct vmdk_extent *e;

	*err = NULL;
	if (strcmp(d->create_type, "seSparse") == 0) {
		*err = xstrdup("createType seSparse: this datastore keeps snapshot deltas as seSparse (VMFS6), not vmfsSparse");
		return NULL;
	}
	if (strcmp(d->create_type, "vmfsSparse") != 0) {
		*err = xasprintf("createType %.40s is not a vmfsSparse snapshot delta", d->create_type);
		return NULL;
	}
	if (d->nextents != 1) {
		*err = xasprintf("vmfsSparse delta with %zu extents; one is expected", d->nextents);
		return NULL;
	}
	e = &d->extents[0];
	if (strcmp(e->type, "VMFSSPARSE") != 0) {
		*err = xasprintf("extent type %s in a vmfsSparse descriptor; VMFSSPARSE is expected", e->type);
		return NULL;
	}
	if (e->file == NULL || !file_name_is_safe(e->file)) {
		*err = xasprintf("delta extent file %.80s is not a plain file name", e->file ? e->file : "?");
		return NULL;
	}
	if (d->parent_hint == NULL || d->parent_hint[0] == '\0') {
		*err = xstrdup("vmfsSparse descriptor without parentFileNameHint");
		return NULL;
	}
	if (!d->has_parent_cid) {
		*err = xstrdup("vmfsSparse descriptor without a valid parentCID");
		return NULL;
	}
	return e->file;
}

int
vmdk_data_file(const char *text, size_t len, const char *desc_file, char **ds, char **flat, char **err)
{
	struct vmdk_desc desc;
	const char *f;
	char *path = NULL, *slash;

	*ds = *flat = NULL;
	if (vmdk_parse(text, len, &desc, err) != 0)
		return -1;
	if ((f = vmdk_flat_file(&desc, err)) == NULL) {
		vmdk_free(&desc);
		return -1;
	}
	if (desc_file == NULL || vs_split_ds_path(desc_file, ds, &path) != 0) {
		*err = xasprintf("no usable file name (%s)", desc_file ? desc_file : "none");
		vmdk_free(&desc);
		return -1;
	}
	/* The extent is named relative to the descriptor's directory. */
	slash = strrchr(path, '/');
	if (slash != NULL)
		slash[1] = '\0';
	else
		path[0] = '\0';
	*flat = xasprintf("%s%s", path, f);
	free(path);
	vmdk_free(&desc);
	return 0;
}
