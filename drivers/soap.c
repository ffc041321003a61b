#include "drivers/soap.h"

#include <errno.h>
#include <libxml/parser.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/core/util.h"

/* ---- libxml2's memory ----
 *
 * A document of tiny elements takes about 35 times its size as a tree
 * (`<x/>` is 4 bytes, its node 120), so a reply under SOAP_REPLY_MAX could
 * still take half a GiB.  Every allocation libxml2 makes goes through the
 * counters below, and while a reply is parsed a request that would pass
 * SOAP_PARSE_MAX_MEM fails: libxml2 gives up on the document cleanly. */

static struct {
	int installed;
	size_t live;   /* bytes libxml2 holds now */
	size_t budget; /* 0: no limit (outside soap_parse_reply) */
	int over;      /* the budget refused an allocation */
} xmem;

static int
xmem_allow(size_t n)
{
	if (xmem.budget != 0 && (n > xmem.budget || xmem.live > xmem.budget - n)) {
		xmem.over = 1;
		return 0;
	}
	return 1;
}

static void
xmem_count(void *p, size_t was)
{
	size_t now = p != NULL ? malloc_usable_size(p) : 0;

	/* Blocks from before the counters were installed are not known. */
	xmem.live = xmem.live >= was ? xmem.live - was : 0;
	xmem.live += now;
}

static void *
xmem_malloc(size_t n)
{
	void *p;

	if (!xmem_allow(n))
		return NULL;
	p = malloc(n);
	xmem_count(p, 0);
	return p;
}

static void *
xmem_realloc(void *old, size_t n)
{
	size_t was = old != NULL ? malloc_usable_size(old) : 0;
	void *p;

	if (n > was && !xmem_allow(n - was))
		return NULL;
	p = realloc(old, n);
	if (p != NULL)
		xmem_count(p, was);
	return p;
}

static void
xmem_free(void *p)
{
	if (p == NULL)
		return;
	xmem_count(NULL, malloc_usable_size(p));
	free(p);
}

static char *
xmem_strdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = xmem_malloc(n);

	if (p != NULL)
		memcpy(p, s, n);
	return p;
}

static void
xml_quiet(void *ctx, const char *msg, ...)
{
	/* Errors are read with xmlGetLastError and reported by the caller. */
}

/* Before libxml2 allocates anything. */
static void
xmem_install(void)
{
	if (xmem.installed)
		return;
	xmem.installed = 1;
	xmlMemSetup(xmem_free, xmem_malloc, xmem_realloc, xmem_strdup);
	/* Out-of-memory reports bypass XML_PARSE_NOERROR and would go to stderr. */
	xmlSetGenericErrorFunc(NULL, xml_quiet);
}

size_t
soap_xml_memory(void)
{
	return xmem.live;
}

void
soap_req_init(struct soap_req *r, const char *method, const char *this_type, const char *this_ref)
{
	xmlNode *env, *body;
	xmlNs *soapenv, *vim;

	xmem_install();
	r->doc = xmlNewDoc((const xmlChar *)"1.0");
	env = xmlNewNode(NULL, (const xmlChar *)"Envelope");
	soapenv = xmlNewNs(env, (const xmlChar *)SOAP_NS_ENV, (const xmlChar *)"soapenv");
	xmlSetNs(env, soapenv);
	xmlNewNs(env, (const xmlChar *)SOAP_NS_XSI, (const xmlChar *)"xsi");
	xmlNewNs(env, (const xmlChar *)SOAP_NS_XSD, (const xmlChar *)"xsd");
	xmlDocSetRootElement(r->doc, env);
	body = xmlNewChild(env, soapenv, (const xmlChar *)"Body", NULL);
	r->method = xmlNewChild(body, NULL, (const xmlChar *)method, NULL);
	vim = xmlNewNs(r->method, (const xmlChar *)SOAP_NS_VIM, NULL);
	xmlSetNs(r->method, vim);
	if (this_ref != NULL)
		soap_add_ref(r, NULL, "_this", this_type, this_ref);
}

void
soap_req_free(struct soap_req *r)
{
	if (r->doc != NULL)
		xmlFreeDoc(r->doc);
	r->doc = NULL;
	r->method = NULL;
}

xmlNode *
soap_add(struct soap_req *r, xmlNode *parent, const char *name, const char *text)
{
	/* xmlNewTextChild escapes the text. */
	return xmlNewTextChild(parent ? parent : r->method, NULL, (const xmlChar *)name, (const xmlChar *)text);
}

xmlNode *
soap_add_typed(struct soap_req *r, xmlNode *parent, const char *name, const char *xsi_type, const char *text)
{
	xmlNode *n = soap_add(r, parent, name, text);

	xmlNewProp(n, (const xmlChar *)"xsi:type", (const xmlChar *)xsi_type);
	return n;
}

xmlNode *
soap_add_ref(struct soap_req *r, xmlNode *parent, const char *name, const char *type, const char *ref)
{
	xmlNode *n = soap_add(r, parent, name, ref);

	if (type != NULL)
		xmlNewProp(n, (const xmlChar *)"type", (const xmlChar *)type);
	return n;
}

xmlNode *
soap_add_u64(struct soap_req *r, xmlNode *parent, const char *name, uint64_t v)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%llu", (unsigned long long)v);
	return soap_add(r, parent, name, buf);
}

xmlNode *
soap_add_bool(struct soap_req *r, xmlNode *parent, const char *name, int v)
{
	return soap_add(r, parent, name, v ? "true" : "false");
}

char *
soap_req_serialize(struct soap_req *r, size_t *len)
{
	xmlChar *mem = NULL;
	int n = 0;
	char *out;

	xmlDocDumpMemoryEnc(r->doc, &mem, &n, "UTF-8");
	out = xstrndup((const char *)mem, (size_t)n);
	xmlFree(mem);
	*len = (size_t)n;
	return out;
}

/* ---- navigation ---- */

int
xml_name_is(const xmlNode *n, const char *name)
{
	return n != NULL && n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, name) == 0;
}

xmlNode *
xml_child(const xmlNode *n, const char *name)
{
	xmlNode *c;

	if (n == NULL)
		return NULL;
	for (c = n->children; c != NULL; c = c->next)
		if (xml_name_is(c, name))
			return c;
	return NULL;
}

xmlNode *
xml_next(const xmlNode *n, const char *name)
{
	xmlNode *c;

	if (n == NULL)
		return NULL;
	for (c = n->next; c != NULL; c = c->next)
		if (xml_name_is(c, name))
			return c;
	return NULL;
}

char *
xml_text(const xmlNode *n)
{
	xmlChar *t;
	char *s;

	if (n == NULL)
		return NULL;
	t = xmlNodeGetContent(n);
	s = xstrdup(t ? (const char *)t : "");
	xmlFree(t);
	return s;
}

char *
xml_child_text(const xmlNode *n, const char *name)
{
	return xml_text(xml_child(n, name));
}

int
soap_parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	/* Digits only: no sign, no blanks (strtoull would take both). */
	if (s == NULL || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return -1;
	*out = v;
	return 0;
}

int
xml_child_u64(const xmlNode *n, const char *name, uint64_t *out)
{
	char *s = xml_child_text(n, name);
	int rc = soap_parse_u64(s, out);

	free(s);
	return rc;
}

int
xml_child_i64(const xmlNode *n, const char *name, int64_t *out)
{
	char *s = xml_child_text(n, name), *end;
	long long v;
	int rc = -1;

	if (s != NULL && *s != '\0') {
		errno = 0;
		v = strtoll(s, &end, 10);
		if (errno == 0 && *end == '\0') {
			*out = v;
			rc = 0;
		}
	}
	free(s);
	return rc;
}

int
xml_child_bool(const xmlNode *n, const char *name, int *out)
{
	char *s = xml_child_text(n, name);
	int rc = 0;

	if (s != NULL && strcmp(s, "true") == 0)
		*out = 1;
	else if (s != NULL && strcmp(s, "false") == 0)
		*out = 0;
	else
		rc = -1;
	free(s);
	return rc;
}

const char *
xml_xsi_type(const xmlNode *n, char *buf, size_t len)
{
	xmlAttr *a;

	if (n == NULL)
		return NULL;
	for (a = n->properties; a != NULL; a = a->next) {
		xmlChar *v;
		const char *colon;

		if (strcmp((const char *)a->name, "type") != 0 || a->ns == NULL ||
		    strcmp((const char *)a->ns->href, SOAP_NS_XSI) != 0)
			continue;
		v = xmlNodeListGetString(n->doc, a->children, 1);
		if (v == NULL)
			return NULL;
		colon = strchr((const char *)v, ':');
		snprintf(buf, len, "%s", colon ? colon + 1 : (const char *)v);
		xmlFree(v);
		return buf;
	}
	return NULL;
}

char *
xml_child_ref(const xmlNode *n, const char *name, char *type_buf, size_t type_len)
{
	xmlNode *c = xml_child(n, name);
	xmlChar *t;

	if (c == NULL)
		return NULL;
	if (type_buf != NULL) {
		t = xmlGetProp(c, (const xmlChar *)"type");
		snprintf(type_buf, type_len, "%s", t ? (const char *)t : "");
		xmlFree(t);
	}
	return xml_text(c);
}

/* ---- replies ---- */

static xmlNode *
first_element(xmlNode *n)
{
	for (; n != NULL; n = n->next)
		if (n->type == XML_ELEMENT_NODE)
			return n;
	return NULL;
}

static void
parse_fault(xmlNode *fault, struct soap_reply *out)
{
	xmlNode *detail = xml_child(fault, "detail"), *d;
	char tbuf[128];

	out->is_fault = 1;
	out->fault_string = xml_child_text(fault, "faultstring");
	d = detail ? first_element(detail->children) : NULL;
	if (d != NULL) {
		const char *t = xml_xsi_type(d, tbuf, sizeof(tbuf));
		size_t l;

		if (t != NULL) {
			out->fault_type = xstrdup(t);
		} else {
			/* <NotAuthenticatedFault>: the element name less "Fault". */
			out->fault_type = xstrdup((const char *)d->name);
			l = strlen(out->fault_type);
			if (l > 5 && strcmp(out->fault_type + l - 5, "Fault") == 0)
				out->fault_type[l - 5] = '\0';
		}
		out->fault_detail = xml_child_text(d, "file");
		if (out->fault_detail == NULL)
			out->fault_detail = xml_child_text(d, "name");
	}
}

int
soap_parse_reply(const char *body, size_t len, struct soap_reply *out, char **err)
{
	xmlNode *root, *b, *c;

	memset(out, 0, sizeof(*out));
	*err = NULL;
	xmem_install();
	if (len > SOAP_REPLY_MAX) {
		*err = xasprintf("reply larger than %u bytes", SOAP_REPLY_MAX);
		return -1;
	}
	xmem.budget = xmem.live + SOAP_PARSE_MAX_MEM;
	xmem.over = 0;
	out->doc = xmlReadMemory(body, (int)len, "reply.xml", NULL,
	    XML_PARSE_NONET | XML_PARSE_NOBLANKS | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	xmem.budget = 0;
	if (xmem.over) {
		if (out->doc != NULL)
			xmlFreeDoc(out->doc);
		out->doc = NULL;
		xmlResetLastError();
		*err = xasprintf("reply needs more than %u MiB of memory to parse (too many elements)",
		    SOAP_PARSE_MAX_MEM >> 20);
		return -1;
	}
	if (out->doc == NULL) {
		const xmlError *e = xmlGetLastError();

		*err = xasprintf("reply is not XML%s%s", e && e->message ? ": " : "",
		    e && e->message ? e->message : "");
		/* libxml2 messages end with a newline. */
		if ((*err)[strlen(*err) - 1] == '\n')
			(*err)[strlen(*err) - 1] = '\0';
		return -1;
	}
	root = xmlDocGetRootElement(out->doc);
	if (!xml_name_is(root, "Envelope") || (b = xml_child(root, "Body")) == NULL) {
		*err = xstrdup("reply is not a SOAP envelope");
		soap_reply_free(out);
		return -1;
	}
	c = first_element(b->children);
	if (c == NULL) {
		*err = xstrdup("SOAP body is empty");
		soap_reply_free(out);
		return -1;
	}
	if (xml_name_is(c, "Fault"))
		parse_fault(c, out);
	else
		out->body_child = c;
	return 0;
}

void
soap_reply_free(struct soap_reply *r)
{
	if (r->doc != NULL)
		xmlFreeDoc(r->doc);
	free(r->fault_type);
	free(r->fault_string);
	free(r->fault_detail);
	memset(r, 0, sizeof(*r));
}

char *
soap_fault_text(const struct soap_reply *r)
{
	return xasprintf("%s: %s%s%s%s", r->fault_type ? r->fault_type : "fault",
	    r->fault_string && *r->fault_string ? r->fault_string : "(no message)",
	    r->fault_detail ? " (" : "", r->fault_detail ? r->fault_detail : "", r->fault_detail ? ")" : "");
}
