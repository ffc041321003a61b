/* /metrics: what the engine measures, in the Prometheus text format
 * (engine/core/prom.c writes it).  The values are those the status
 * socket shows at the same moment (jobs, stats, ping). */
#ifndef VMFERRY_METRICS_H
#define VMFERRY_METRICS_H

struct evbuffer;

void metrics_write(struct evbuffer *b);

#endif
