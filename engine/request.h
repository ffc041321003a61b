/* Status socket requests: one JSON object per line, {"op": ...}.  Parsing
 * and validation only, so the fuzz target can run it on any bytes. */
#ifndef VMFERRY_REQUEST_H
#define VMFERRY_REQUEST_H

#include <stddef.h>

#define REQUEST_MAX_LINE (64 * 1024)

#define REQUEST_OPS(X)                                              \
	X(PING, "ping")                                             \
	X(RULES, "rules")                                           \
	X(JOBS, "jobs")                                             \
	X(SHOW, "show")                                             \
	X(LOG, "log")                                               \
	X(STATS, "stats")                                           \
	X(WATCH, "watch")                                           \
	X(START, "start")                                           \
	X(STOP, "stop")                                             \
	X(DELETE, "delete")                                         \
	X(MIGRATE, "migrate")                                       \
	X(RUN, "run")                                               \
	X(FAILOVER, "failover")                                     \
	X(FAILBACK, "failback")                                     \
	X(REVERT, "revert")                                         \
	X(RESTORE, "restore")                                       \
	X(VERIFY, "verify")                                         \
	X(INSTANT, "instant")                                       \
	X(INVENTORY, "inventory")                                   \
	X(RELOAD, "reload")

enum request_op {
#define X(n, s) OP_##n,
	REQUEST_OPS(X)
#undef X
	OP_COUNT
};

struct request {
	enum request_op op;
	char *rule;     /* NULL if not given */
	char *vm;
	char *kind;     /* "migration" | "replication" | "backup" */
	char *platform;
	char *point;    /* restore point */
	char *mode;     /* run: full | incremental | differential */
	char *target;   /* restore: "original" | "new" | "instant" */
	char *listen;   /* restore --target instant: "unix" | "127.0.0.1:PORT" */
	char *stop;     /* instant: the id of the instant recovery to stop */
	char *name;     /* restore --target new: the new VM's name */
	char *datacenter, *host, *datastore; /* restore --target new: where (with platform) */
	int power_on;   /* restore: power the restored VM on */
	int refresh;
	int permanent;
	long limit;     /* log: entries, default 50 */
	char *id;       /* echoed back, lets a client match answers */
};

/* Returns 0, or -1 with *err set to a malloc'd message for the client. */
int request_parse(const char *line, size_t len, struct request *out, char **err);
void request_free(struct request *r);
const char *request_op_name(enum request_op op);

#endif
