/* Registered platforms (源平台 / 目标平台): one vSphere client each, made
 * from the configuration and remade when its connection settings change,
 * and the last inventory read from it (the seed's refresh button). */
#ifndef VMFERRY_PLATFORM_H
#define VMFERRY_PLATFORM_H

#include <jansson.h>

#include "drivers/vsphere.h"

struct config;
struct vs_client;
struct vs_inventory;

void platform_apply_config(const struct config *c);
void platform_shutdown(void);
/* NULL if no such platform is configured. */
struct vs_client *platform_client(const char *name);

/* The platform's inventory: from the cache unless refresh is set or
 * there is none yet.  done gets the inventory, or NULL with error set and
 * refused non-zero when the platform refused us (credentials or its
 * certificate: trying again will not help); otherwise it could not be
 * reached or read, and a later try may work. */
typedef void (*platform_inv_fn)(const struct vs_inventory *inv, const char *error, int refused, double age_s,
    void *arg);
int platform_inventory(const char *name, int refresh, platform_inv_fn done, void *arg);

#endif
