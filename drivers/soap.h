/* vSphere SOAP messages: building requests and reading replies with
 * libxml2.  Pure functions of bytes, so the reply parser is fuzzed. */
#ifndef VMFERRY_SOAP_H
#define VMFERRY_SOAP_H

#include <libxml/tree.h>
#include <stddef.h>
#include <stdint.h>

#define SOAP_NS_VIM "urn:vim25"
#define SOAP_NS_XSI "http://www.w3.org/2001/XMLSchema-instance"
#define SOAP_NS_ENV "http://schemas.xmlsoap.org/soap/envelope/"
#define SOAP_NS_XSD "http://www.w3.org/2001/XMLSchema"

/* A request under construction: <Method xmlns="urn:vim25"><_this type=..>moref</_this>... */
struct soap_req {
	xmlDoc *doc;
	xmlNode *method;
};

void soap_req_init(struct soap_req *r, const char *method, const char *this_type, const char *this_ref);
void soap_req_free(struct soap_req *r);
/* Append <name>text</name> (text escaped) under parent (NULL = the method). */
xmlNode *soap_add(struct soap_req *r, xmlNode *parent, const char *name, const char *text);
xmlNode *soap_add_typed(struct soap_req *r, xmlNode *parent, const char *name, const char *xsi_type,
    const char *text);
/* <name type="T">moref</name> */
xmlNode *soap_add_ref(struct soap_req *r, xmlNode *parent, const char *name, const char *type, const char *ref);
xmlNode *soap_add_u64(struct soap_req *r, xmlNode *parent, const char *name, uint64_t v);
xmlNode *soap_add_bool(struct soap_req *r, xmlNode *parent, const char *name, int v);
/* The whole envelope as bytes (malloc'd). */
char *soap_req_serialize(struct soap_req *r, size_t *len);

/* A parsed reply. */
struct soap_reply {
	xmlDoc *doc;
	xmlNode *body_child;  /* the <MethodResponse> element, or NULL on a fault */
	int is_fault;
	char *fault_type;     /* e.g. "NotAuthenticated", "FileFault", "InvalidLogin"; or NULL */
	char *fault_string;   /* faultstring text */
	char *fault_detail;   /* a useful detail field (e.g. FileFault file), or NULL */
};

/* Limits on what a server may send (docs/ARCHITECTURE.md, "Limits"): a
 * reply body larger than SOAP_REPLY_MAX is refused while it arrives, and
 * parsing one may take at most SOAP_PARSE_MAX_MEM of memory for its tree
 * (real vSphere XML needs about 11 times its size, a flood of empty
 * elements about 35 times). */
#define SOAP_REPLY_MAX (16u << 20)
#define SOAP_PARSE_MAX_MEM (64u << 20)

/* Parse a reply body.  Returns 0, or -1 with *err (malloc'd) for bytes
 * that are not a SOAP envelope, or that pass the limits above.  Entities
 * and network access are off. */
int soap_parse_reply(const char *body, size_t len, struct soap_reply *out, char **err);
/* Bytes libxml2 holds now (for tests). */
size_t soap_xml_memory(void);
void soap_reply_free(struct soap_reply *r);
/* "FileFault: Cannot read ... (file [ds0] x.vmdk)" */
char *soap_fault_text(const struct soap_reply *r);

/* Navigation by local name (namespace prefixes differ between servers). */
xmlNode *xml_child(const xmlNode *n, const char *name);
xmlNode *xml_next(const xmlNode *n, const char *name); /* next sibling with that name */
/* Text content of the child with that name (malloc'd), or NULL. */
char *xml_child_text(const xmlNode *n, const char *name);
char *xml_text(const xmlNode *n);
int xml_child_u64(const xmlNode *n, const char *name, uint64_t *out);
/* A decimal number and nothing else (no sign, no blanks): 0, or -1. */
int soap_parse_u64(const char *s, uint64_t *out);
int xml_child_i64(const xmlNode *n, const char *name, int64_t *out);
int xml_child_bool(const xmlNode *n, const char *name, int *out);
/* The xsi:type of an element without prefix ("VirtualDisk"), or NULL. */
const char *xml_xsi_type(const xmlNode *n, char *buf, size_t len);
int xml_name_is(const xmlNode *n, const char *name);
/* A moref child: its text and its type attribute. */
char *xml_child_ref(const xmlNode *n, const char *name, char *type_buf, size_t type_len);

#endif
