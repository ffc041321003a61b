/* kind: system's http: mapping, the HTTP listener (SPEC §13):
 *
 *   http: { listen: "127.0.0.1:9780", token_file: secrets/http-token }
 *
 * An address beyond loopback needs a token file: anyone who can reach
 * the port could otherwise read every rule's jobs. */
#include <stdlib.h>
#include <string.h>

#include "engine/config_int.h"
#include "engine/core/util.h"
#include "engine/http_req.h"

#define HTTP_DEFAULT_LISTEN "127.0.0.1:9780"
/* A token shorter than this is guessable; longer, it is no header. */
#define HTTP_TOKEN_MIN 16
#define HTTP_TOKEN_MAX 256

static const char *
token_problem(const char *tok)
{
	size_t n = strlen(tok), i;

	if (n < HTTP_TOKEN_MIN)
		return "holds a token shorter than 16 characters";
	if (n > HTTP_TOKEN_MAX)
		return "holds a token longer than 256 characters";
	for (i = 0; i < n; i++)
		if ((unsigned char)tok[i] <= 0x20 || (unsigned char)tok[i] >= 0x7f)
			return "holds a token with a space or a character that is not printable ASCII";
	return NULL;
}

void
cfg_parse_http(struct pctx *c, yaml_node_t *n, struct cfg_http *out)
{
	enum { F_LISTEN, F_TOKEN };
	struct field f[] = {
		{ "listen", 0, NULL, NULL },
		{ "token_file", 0, NULL, NULL },
	};
	const char *listen = HTTP_DEFAULT_LISTEN, *s, *why;
	char host[64];
	int before = c->nerr, sys;

	memset(out, 0, sizeof(*out));
	out->loc.file = c->path;
	out->loc.line = (int)n->start_mark.line + 1;
	out->loc.col = (int)n->start_mark.column + 1;
	if (cfg_map_fields(c, n, "http", f, ARRAY_LEN(f)) != 0)
		return;
	if (f[F_LISTEN].val != NULL) {
		if ((listen = cfg_get_str(c, f[F_LISTEN].val, "listen")) == NULL)
			listen = HTTP_DEFAULT_LISTEN;
		else if (http_listen_parse(listen, host, sizeof(host), &out->port, &out->loopback, &why) != 0)
			cfg_perr(c, f[F_LISTEN].val, "listen: %s, got \"%.64s\"", why, listen);
	} else {
		http_listen_parse(listen, host, sizeof(host), &out->port, &out->loopback, &why);
	}
	if (f[F_TOKEN].val != NULL && (s = cfg_get_str(c, f[F_TOKEN].val, "token_file")) != NULL) {
		char *full = cfg_path_join(c->confdir, s);

		if (*s == '\0')
			cfg_perr(c, f[F_TOKEN].val, "token_file: empty path");
		else if (cfg_read_secret(full, &out->token, &why, &sys) != 0)
			cfg_perr(c, f[F_TOKEN].val, sys ? "token_file: cannot read %s: %s" : "token_file: %s %s", s, why);
		else if ((why = token_problem(out->token)) != NULL)
			cfg_perr(c, f[F_TOKEN].val, "token_file: %s %s", s, why);
		else
			out->token_file = xstrdup(s);
		free(full);
	}
	if (c->nerr == before && !out->loopback && out->token_file == NULL)
		cfg_perr(c, f[F_LISTEN].val, "listen: %s is beyond loopback; give a token_file so that only "
		    "holders of the token can use it", listen);
	if (c->nerr != before) {
		cfg_http_free(out);
		return;
	}
	out->enabled = 1;
	out->listen = xstrdup(listen);
	out->host = xstrdup(host);
}

void
cfg_http_free(struct cfg_http *h)
{
	if (h->token != NULL)
		explicit_bzero(h->token, strlen(h->token));
	free(h->token);
	free(h->token_file);
	free(h->listen);
	free(h->host);
	memset(h, 0, sizeof(*h));
}
