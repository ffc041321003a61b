/* The last good version of each config file, kept in the store so that it
 * survives a restart: the loader keeps them across reloads, this keeps
 * them across runs of the daemon.  vmferryd -n does not use it. */
#ifndef VMFERRY_CONFIG_STORE_H
#define VMFERRY_CONFIG_STORE_H

struct cfg_loader;

/* Before the first reload: give the loader the versions kept by the
 * previous run.  A kept version that no longer loads is forgotten, with a
 * warning. */
void config_store_restore(struct cfg_loader *ld);
/* After a reload: keep the loader's last good versions, and forget those
 * of files that are gone (or were never good). */
void config_store_save(const struct cfg_loader *ld);

#endif
