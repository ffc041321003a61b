/* The job kinds, listed once (see kinds.h). */
#include "engine/jobs/kinds.h"

#include <stddef.h>
#include <string.h>

#include "engine/jobs/backup.h"
#include "engine/jobs/migrate.h"
#include "engine/jobs/replicate.h"
#include "fsm/tables.h"

static const struct job_kind migration = {
	.kind = CFG_MIGRATION,
	.table = &fsm_migration,
	.before_command = mig_before_command,
	.run_event = -1,
	.details = mig_details,
};

static const struct job_kind replication = {
	.kind = CFG_REPLICATION,
	.table = &fsm_replication,
	.before_command = rep_before_command,
	.run_event = REP_EV_RUN,
	.details = rep_details,
	.admit_event = rep_admit_event,
};

static const struct job_kind backup = {
	.kind = CFG_BACKUP,
	.table = &fsm_backup,
	.before_command = bak_before_command,
	.run_event = BAK_EV_RUN,
	.before_run = bak_before_run,
	.details = bak_details,
};

const struct job_kind *const job_kinds[] = { &migration, &replication, &backup, NULL };

const struct job_kind *
job_kind_of(enum cfg_kind kind)
{
	size_t i;

	for (i = 0; job_kinds[i] != NULL; i++)
		if (job_kinds[i]->kind == kind)
			return job_kinds[i];
	return NULL;
}

const struct job_kind *
job_kind_named(const char *name)
{
	size_t i;

	for (i = 0; name != NULL && job_kinds[i] != NULL; i++)
		if (strcmp(job_kinds[i]->table->kind, name) == 0)
			return job_kinds[i];
	return NULL;
}

const char *
job_kind_name(const struct job_kind *k)
{
	return k->table->kind;
}
