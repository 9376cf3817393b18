/* SPDX-License-Identifier: MIT */
/*
 * libarl.c - the client API as a shared library, libarl.so, for callers
 * that can only call exported symbols: Python's ctypes, cffi in ABI mode and
 * other foreign-function interfaces. C and C++ clients include arl.h instead.
 *
 * arl.h defines every function as ARL_API, which is "static inline" unless
 * defined first. Defining it empty here turns each definition into an
 * external one, compiled from the same header the C clients include.
 * libarl.map then exports the public arl_* functions and keeps the arl_impl_*
 * helpers local.
 */
#define ARL_API
#include <arl.h>
