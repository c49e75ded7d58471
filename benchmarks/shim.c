/*
 * LD_PRELOAD shim that makes wrk present a client certificate.
 *
 * wrk cannot present a client certificate on its own.  This shim wraps
 * SSL_new() so that every TLS connection wrk makes carries the certificate
 * and key named by BENCH_CLIENT_CERT and BENCH_CLIENT_KEY (PEM), and wraps
 * SSL_clear() (which wrk calls between connections of the same slot) to drop
 * the previous TLS session: every new connection is a full handshake, the
 * client certificate is sent and verified each time, never skipped by a
 * resumed session.
 *
 * It fails closed: if the variables are missing or the files do not load,
 * the process aborts instead of running without a certificate.
 *
 * Compiled at run time by benchmarks/shim.py:
 *     gcc -shared -fPIC -O2 -o shim.so shim.c -ldl -lssl -lcrypto
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include <openssl/pem.h>
#include <openssl/ssl.h>

static pthread_once_t loaded = PTHREAD_ONCE_INIT;
static X509 *certificate;
static EVP_PKEY *key;
static SSL *(*realNew)(SSL_CTX *);
static int (*realClear)(SSL *);

static void die(const char *why, const char *what) {
    fprintf(stderr, "bench client-certificate shim: %s%s\n", why, what ? what : "");
    abort();
}

static void load(void) {
    const char *certPath = getenv("BENCH_CLIENT_CERT");
    const char *keyPath = getenv("BENCH_CLIENT_KEY");
    FILE *f;

    realNew = (SSL *(*)(SSL_CTX *))dlsym(RTLD_NEXT, "SSL_new");
    realClear = (int (*)(SSL *))dlsym(RTLD_NEXT, "SSL_clear");
    if (realNew == NULL || realClear == NULL)
        die("cannot find SSL_new/SSL_clear in the next library", NULL);
    if (certPath == NULL || keyPath == NULL)
        die("BENCH_CLIENT_CERT and BENCH_CLIENT_KEY must be set", NULL);
    if ((f = fopen(certPath, "r")) == NULL)
        die("cannot open ", certPath);
    certificate = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if ((f = fopen(keyPath, "r")) == NULL)
        die("cannot open ", keyPath);
    key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (certificate == NULL || key == NULL)
        die("cannot read the certificate or key", NULL);
}

static void present(SSL *ssl) {
    if (SSL_use_certificate(ssl, certificate) != 1 || SSL_use_PrivateKey(ssl, key) != 1
        || SSL_check_private_key(ssl) != 1)
        die("the certificate and key do not fit together", NULL);
}

SSL *SSL_new(SSL_CTX *ctx) {
    SSL *ssl;

    pthread_once(&loaded, load);
    ssl = realNew(ctx);
    if (ssl != NULL)
        present(ssl);
    return ssl;
}

int SSL_clear(SSL *ssl) {
    int result;

    pthread_once(&loaded, load);
    result = realClear(ssl);
    /* No resumption: the next connection of this slot is a full handshake. */
    SSL_set_session(ssl, NULL);
    present(ssl);
    return result;
}
