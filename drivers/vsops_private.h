/* What the files of the vSphere operations share (vsops.c, vs_inventory.c,
 * vs_tasks.c, vs_vm.c, vs_files.c); not for use outside drivers/vs*.c.
 * The public interface is drivers/vsops.h. */
#ifndef VMFERRY_VSOPS_PRIVATE_H
#define VMFERRY_VSOPS_PRIVATE_H

#include "drivers/vsops.h"

#define TASK_POLL_FIRST_MS 20
#define TASK_POLL_MAX_MS 1000

struct vs_op;
typedef void (*vsop_step_fn)(struct vs_op *op, struct vs_result *res);

struct vs_op {
	struct vs_client *c;
	struct vs_call *call;
	struct http_req *http;
	struct event *timer;
	vs_op_fn done;
	void *arg;
	struct vs_out out;
	vsop_step_fn next;      /* handles the reply of the call in flight */
	int finishing;          /* in its done callback: freed when that returns */
	/* Per-operation state. */
	char *vm;
	char *snap;
	char *task;
	char *view;
	char *change_id;
	char *dc, *ds, *path;
	char *key, *value;        /* extraConfig */
	int disk_key;
	int page_size;
	int poll_ms;
	int relogged;
	uint64_t objects;         /* inventory: objects read so far */
	uint64_t empty_pages;     /* inventory: pages without objects that announced more */
	double first_try;         /* datastore GETs: retried with a backoff */
	double backoff;
	size_t dc_index;
	uint64_t capacity;
	uint64_t offset;
	struct soap_req *pending; /* a request built before login (CreateVM_Task) */
	char **cr_ref, **cr_pool; /* compute resources seen: moref → resource pool */
	size_t ncr;
	void (*after_task)(struct vs_op *op, xmlNode *info);
	const char *task_method;  /* vsop_simple_task: the method and its object's type */
	const char *task_type;
};

/* An operation's life (vsops.c).  vsop_start logs in (for the service
 * content) and then runs first; vsop_relogin logs in again and then runs
 * next.  vsop_finish and vsop_fail hand op->out to the caller and free
 * the op. */
struct vs_op *vsop_start(struct vs_client *c, vs_op_fn done, void *arg, vsop_step_fn first);
void vsop_relogin(struct vs_op *op, vsop_step_fn next);
/* Sends req (whose contents it takes); next gets the reply of a call that
 * succeeded, a failed call fails the op. */
void vsop_call(struct vs_op *op, struct soap_req *req, vsop_step_fn next);
void vsop_finish(struct vs_op *op);
/* Takes msg. */
void vsop_fail(struct vs_op *op, enum vs_status st, const char *fault_type, char *msg);
void vsop_fail_res(struct vs_op *op, struct vs_result *res);
xmlNode *vsop_returnval(struct vs_result *res);

/* Property collector requests and replies (vsops.c). */
xmlNode *vsop_add_propset(struct soap_req *r, xmlNode *spec, const char *type, const char *const *paths);
void vsop_add_options(struct soap_req *r, int page_size);
/* RetrievePropertiesEx of paths of one object. */
void vsop_retrieve(struct vs_op *op, const char *type, const char *ref, const char *const *paths, vsop_step_fn next);
xmlNode *vsop_prop_val(const xmlNode *objects, const char *name);
char *vsop_prop_text(const xmlNode *objects, const char *name);
char *vsop_quote(const char *s);

/* VM configurations (vs_inventory.c). */
void vsop_parse_devices(const xmlNode *val, struct vs_disk **disks, size_t *ndisks, struct vs_vm *vm);
void vsop_disks_free(struct vs_disk *d, size_t n);

/* Tasks (vs_tasks.c).  vsop_task_started is the step after a *_Task call:
 * it polls the task, then runs op->after_task (one of the two results). */
void vsop_task_started(struct vs_op *op, struct vs_result *res);
void vsop_task_result_moref(struct vs_op *op, xmlNode *info);
void vsop_task_result_none(struct vs_op *op, xmlNode *info);
struct vs_op *vsop_simple_task(struct vs_client *c, const char *method, const char *type, const char *ref,
    vs_op_fn done, void *arg);

#endif
