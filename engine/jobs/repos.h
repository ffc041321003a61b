/* The backup repositories this daemon has open: one struct repo per
 * directory, shared by every rule that names it (drivers/repo.h allows
 * one user per repository per process), opened on first use and kept
 * until the daemon stops. */
#ifndef VMFERRY_JOBS_REPOS_H
#define VMFERRY_JOBS_REPOS_H

struct cfg_rule;
struct repo;

/* The rule's repository directory and key file as absolute paths
 * (malloc'd; *key NULL without encryption); relative paths are taken
 * against the state directory.  NULL when the rule names no repository. */
char *repos_dir_of(const struct cfg_rule *r, char **key);
/* The open repository of the rule, opening it (creating it when the
 * directory is new or empty) on first use; NULL with *err (a wrong or
 * missing key, a directory that is not a repository).  An encrypted one
 * already open is given only while its key file still holds its key (a
 * replaced key file is refused, as at the next opening).  Blocking: a few
 * small files on first use, then the key file. */
struct repo *repos_get(const struct cfg_rule *r, char **err);
/* At shutdown, once no job uses them. */
void repos_close_all(void);

#endif
