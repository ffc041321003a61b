/* The open backup repositories (see repos.h). */
#include "engine/jobs/repos.h"

#include <stdlib.h>
#include <string.h>

#include "drivers/repo.h"
#include "engine/config.h"
#include "engine/core/util.h"
#include "engine/engine.h"

static struct open_repo {
	char *dir;
	char *key;
	struct repo *r;
} *open_repos;
static size_t nopen;

static char *
absolute(const char *path)
{
	if (path == NULL)
		return NULL;
	return path[0] == '/' ? xstrdup(path) : xasprintf("%s/%s", engine_state_dir(), path);
}

char *
repos_dir_of(const struct cfg_rule *r, char **key)
{
	*key = absolute(r->key_file);
	return absolute(r->repository);
}

struct repo *
repos_get(const struct cfg_rule *rule, char **err)
{
	char *key = NULL, *dir = repos_dir_of(rule, &key);
	struct repo *r = NULL;
	size_t i;

	if (dir == NULL) {
		*err = xasprintf("rule %s names no repository and its node has none", rule->name);
		free(key);
		return NULL;
	}
	for (i = 0; i < nopen; i++) {
		if (strcmp(open_repos[i].dir, dir) != 0)
			continue;
		if (!str_eq(open_repos[i].key, key)) {
			*err = xasprintf("repository %s is open with %s; rule %s names %s", dir,
			    open_repos[i].key ? open_repos[i].key : "no key", rule->name, key ? key : "no key");
			r = NULL;
		} else if (repo_check_key(open_repos[i].r, key, err) == 0) {
			/* The key file may have been replaced since it was opened. */
			r = open_repos[i].r;
		}
		free(dir);
		free(key);
		return r;
	}
	if (repo_open(dir, key, &r, err) != 0) {
		free(dir);
		free(key);
		return NULL;
	}
	open_repos = xreallocarray(open_repos, nopen + 1, sizeof(*open_repos));
	open_repos[nopen].dir = dir;
	open_repos[nopen].key = key;
	open_repos[nopen].r = r;
	nopen++;
	return r;
}

void
repos_close_all(void)
{
	size_t i;

	for (i = 0; i < nopen; i++) {
		repo_close(open_repos[i].r);
		free(open_repos[i].dir);
		free(open_repos[i].key);
	}
	free(open_repos);
	open_repos = NULL;
	nopen = 0;
}
