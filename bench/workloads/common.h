/* Shared helpers for the benchmark workloads: argument parsing, a monotonic clock and
 * the one-line JSON result every workload prints on stdout:
 *   {"workload": NAME, "ops": N, "seconds": S, "ops_per_s": R}
 * Errors go to stderr as one line and exit with status 1. */
#ifndef RW_BENCH_COMMON_H
#define RW_BENCH_COMMON_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline long parse_count(const char *arg)
{
	char *end = NULL;
	long n;

	errno = 0;
	n = strtol(arg, &end, 10);
	if (errno || !end || *end || n <= 0) {
		fprintf(stderr, "invalid count %s: expected a positive integer\n", arg);
		exit(1);
	}
	return n;
}

static inline void die(const char *what)
{
	fprintf(stderr, "%s: %s\n", what, strerror(errno));
	exit(1);
}

static inline void report(const char *name, long ops, double seconds)
{
	printf("{\"workload\": \"%s\", \"ops\": %ld, \"seconds\": %.6f, \"ops_per_s\": %.1f}\n",
	       name, ops, seconds, seconds > 0 ? (double)ops / seconds : 0.0);
	fflush(stdout);
}

#endif
