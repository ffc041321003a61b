/* A VM's configuration as JSON, both ways: what 备份虚拟机配置 saves
 * (vm-config.json, then a restore point's manifest) and what a restore to
 * a new VM creates a faithful copy from (docs/ARCHITECTURE.md, "Target
 * VMs": the hardware CreateVM is given). */
#ifndef VMFERRY_JOBS_VMCONFIG_H
#define VMFERRY_JOBS_VMCONFIG_H

typedef struct json_t json_t;
struct vs_vm;

json_t *vmconfig_json(const struct vs_vm *vm);
/* The VM a saved configuration describes, into *vm (zeroed first).
 * 0, or -1 with *err (malloc'd) when it cannot be made from it (a
 * configuration saved before the hardware was kept, a missing field). */
int vmconfig_parse(const json_t *cfg, struct vs_vm *vm, char **err);

#endif
