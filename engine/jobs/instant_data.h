/* Instant recovery's persisted record and the `--listen` address: parsing
 * only, so the fuzz target runs them on any bytes (instant.c does the
 * work). */
#ifndef VMFERRY_JOBS_INSTANT_DATA_H
#define VMFERRY_JOBS_INSTANT_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "engine/core/util.h"

#define INSTANT_MAX_DISKS 1024

/* Where the exports listen: a Unix socket per disk under the state
 * directory, or a loopback address with one port per disk (port,
 * port + 1, ...). */
struct instant_listen {
	int tcp;               /* 0: Unix sockets */
	char addr[40];         /* tcp: "127.0.0.1", "::1" ... */
	unsigned port;         /* tcp: the first disk's port */
};

/* "unix", "127.x.y.z:PORT" or "[::1]:PORT" (PORT 1..65535): 0, or -1 with
 * *err (malloc'd).  ndisks > 0 also checks that every disk's port fits. */
int instant_listen_parse(const char *s, size_t ndisks, struct instant_listen *out, char **err);
/* The text instant_listen_parse reads back (malloc'd). */
char *instant_listen_text(const struct instant_listen *l);

enum instant_state {
	INSTANT_RUNNING = 1,   /* its exports are to be served (restarted when they die) */
	INSTANT_STOPPING = 2,  /* `instant --stop` asked: processes and overlays go */
};

struct instant_rec {
	uint64_t id;
	enum instant_state state;
	char *rule, *vm;
	uint64_t point;
	char *repo;            /* the repository directory (absolute) */
	char *key_file;        /* absolute, or NULL: not encrypted */
	struct instant_listen listen;
	int64_t created;       /* Unix seconds */
	size_t ndisks;
	uint64_t *capacity;    /* per disk */
};

void instant_rec_put(const struct instant_rec *x, struct sbuf *b);
/* 0, or -1 (a record of another version, short, or with values out of
 * range); *x is freed with instant_rec_free either way. */
int instant_rec_get(const void *p, size_t n, struct instant_rec *x);
void instant_rec_free(struct instant_rec *x);

#endif
