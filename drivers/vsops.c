/* The plumbing of the vSphere operations: an operation's life, its SOAP
 * calls in sequence, property collector requests and replies.  The
 * operations themselves live in vs_inventory.c, vs_tasks.c, vs_vm.c and
 * vs_files.c. */
#include "drivers/vsops.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/vsops_private.h"
#include "engine/core/http.h"
#include "engine/core/util.h"

/* ---- plumbing ---- */

static struct vs_op *
op_new(struct vs_client *c, vs_op_fn done, void *arg)
{
	struct vs_op *op = xcalloc(1, sizeof(*op));

	op->c = c;
	op->done = done;
	op->arg = arg;
	op->poll_ms = TASK_POLL_FIRST_MS;
	return op;
}

static void
out_free(struct vs_out *o)
{
	free(o->error);
	free(o->fault_type);
	free(o->moref);
	if (o->inv != NULL) {
		vs_inventory_free(o->inv);
		free(o->inv);
	}
	if (o->vm != NULL) {
		vs_vm_free(o->vm);
		free(o->vm);
	}
	vsop_disks_free(o->disks, o->ndisks);
	free(o->extents);
	free(o->data);
}

static void
op_free(struct vs_op *op)
{
	if (op->call != NULL)
		vs_call_cancel(op->call);
	if (op->http != NULL)
		http_cancel(op->http);
	if (op->timer != NULL)
		event_free(op->timer);
	out_free(&op->out);
	free(op->vm);
	free(op->snap);
	free(op->task);
	free(op->view);
	free(op->change_id);
	free(op->dc);
	free(op->ds);
	free(op->path);
	free(op->key);
	free(op->value);
	if (op->pending != NULL) {
		soap_req_free(op->pending);
		free(op->pending);
	}
	for (size_t i = 0; i < op->ncr; i++) {
		free(op->cr_ref[i]);
		free(op->cr_pool[i]);
	}
	free(op->cr_ref);
	free(op->cr_pool);
	free(op);
}

void *
vs_op_cancel(struct vs_op *op)
{
	void *arg;

	/* Cancelled from its own done callback (its answer failed the job,
	 * and the transition cancels the job's work): vsop_finish frees it,
	 * and the callback has its arg. */
	if (op == NULL || op->finishing)
		return NULL;
	arg = op->arg;
	op_free(op);
	return arg;
}

void
vsop_finish(struct vs_op *op)
{
	op->call = NULL;
	op->finishing = 1;
	if (op->done != NULL)
		op->done(&op->out, op->arg);
	op_free(op);
}

void
vsop_fail(struct vs_op *op, enum vs_status st, const char *fault_type, char *msg)
{
	op->out.status = st;
	free(op->out.error);
	op->out.error = msg;
	if (fault_type != NULL && op->out.fault_type == NULL)
		op->out.fault_type = xstrdup(fault_type);
	vsop_finish(op);
}

/* Carries a failed call's status and message into the op's result. */
void
vsop_fail_res(struct vs_op *op, struct vs_result *res)
{
	vsop_fail(op, res->status, res->reply.fault_type, xstrdup(res->error ? res->error : "call failed"));
}

/* The reply of a call, a login or a re-login: a failure fails the op, a
 * success goes to its next step. */
static void
op_call_done(struct vs_result *res, void *arg)
{
	struct vs_op *op = arg;

	op->call = NULL;
	if (res->status != VS_OK) {
		vsop_fail_res(op, res);
		return;
	}
	op->next(op, res);
}

void
vsop_call(struct vs_op *op, struct soap_req *req, vsop_step_fn next)
{
	op->next = next;
	op->call = vs_call(op->c, req, op_call_done, op);
}

xmlNode *
vsop_returnval(struct vs_result *res)
{
	return xml_child(res->reply.body_child, "returnval");
}

/* ---- property collector requests ---- */

xmlNode *
vsop_add_propset(struct soap_req *r, xmlNode *spec, const char *type, const char *const *paths)
{
	xmlNode *ps = soap_add(r, spec, "propSet", NULL);

	soap_add(r, ps, "type", type);
	for (; *paths != NULL; paths++)
		soap_add(r, ps, "pathSet", *paths);
	return ps;
}

static void
add_objectset_obj(struct soap_req *r, xmlNode *spec, const char *type, const char *ref)
{
	xmlNode *os = soap_add(r, spec, "objectSet", NULL);

	soap_add_ref(r, os, "obj", type, ref);
	soap_add_bool(r, os, "skip", 0);
}

void
vsop_add_options(struct soap_req *r, int page_size)
{
	xmlNode *opt = soap_add(r, NULL, "options", NULL);

	if (page_size > 0) {
		char buf[16];

		snprintf(buf, sizeof(buf), "%d", page_size);
		soap_add(r, opt, "maxObjects", buf);
	}
}

/* The <val> of a named property within an <objects> element. */
xmlNode *
vsop_prop_val(const xmlNode *objects, const char *name)
{
	xmlNode *ps;

	for (ps = xml_child(objects, "propSet"); ps != NULL; ps = xml_next(ps, "propSet")) {
		char *n = xml_child_text(ps, "name");
		int match = n != NULL && strcmp(n, name) == 0;

		free(n);
		if (match)
			return xml_child(ps, "val");
	}
	return NULL;
}

char *
vsop_prop_text(const xmlNode *objects, const char *name)
{
	xmlNode *v = vsop_prop_val(objects, name);

	return v ? xml_text(v) : NULL;
}

/* A server's value for a message: quoted, at most 40 bytes, printable. */
char *
vsop_quote(const char *s)
{
	char *q = xasprintf("\"%.40s\"%s", s ? s : "", s && strlen(s) > 40 ? "..." : "");
	char *p;

	for (p = q + 1; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
			*p = '?';
	return q;
}

void
vsop_retrieve(struct vs_op *op, const char *type, const char *ref, const char *const *paths, vsop_step_fn next)
{
	struct soap_req req;
	xmlNode *spec;

	soap_req_init(&req, "RetrievePropertiesEx", "PropertyCollector", vs_service(op->c)->property_collector);
	spec = soap_add(&req, NULL, "specSet", NULL);
	vsop_add_propset(&req, spec, type, paths);
	add_objectset_obj(&req, spec, type, ref);
	vsop_add_options(&req, 0);
	vsop_call(op, &req, next);
}

/* Ops that need the service content first log in, then run their step. */
struct vs_op *
vsop_start(struct vs_client *c, vs_op_fn done, void *arg, vsop_step_fn first)
{
	struct vs_op *op = op_new(c, done, arg);

	op->next = first;
	op->call = vs_login(c, op_call_done, op);
	return op;
}

void
vsop_relogin(struct vs_op *op, vsop_step_fn next)
{
	op->next = next;
	op->call = vs_relogin(op->c, op_call_done, op);
}
