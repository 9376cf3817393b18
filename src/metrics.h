/* SPDX-License-Identifier: MIT */
/*
 * metrics.h - arld's statistics in the Prometheus text exposition format,
 * read straight from the segment and served over HTTP with libmicrohttpd.
 */
#ifndef ARL_METRICS_H
#define ARL_METRICS_H

#include <arl.h>

struct arl_metrics_server;

/*
 * Renders every live bucket's limits and counters, and the supervisor's
 * sweep count, as Prometheus text (version 0.0.4) into a malloc'd,
 * NUL-terminated string. Returns NULL when out of memory.
 */
char *arl_metrics_render(const struct arl *arl);

/*
 * Starts serving GET /metrics on address:port (port 0 picks a free one).
 * Returns NULL with a message in error when the address is invalid or the
 * port cannot be bound.
 */
struct arl_metrics_server *arl_metrics_start(const struct arl *arl, const char *address,
					     unsigned port, char *error, size_t error_size);

/* Returns the port the server listens on. */
unsigned arl_metrics_port(const struct arl_metrics_server *server);

void arl_metrics_stop(struct arl_metrics_server *server);

#endif /* ARL_METRICS_H */
