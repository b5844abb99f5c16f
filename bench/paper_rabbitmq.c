/* The RabbitMQ side of bench/paper.py: one producer or one consumer with librabbitmq (the C
 * client), compiled by paper.py with gcc.
 *
 *   paper_rabbitmq produce HOST PORT QUEUE COUNT SIZE BATCH
 *   paper_rabbitmq consume HOST PORT QUEUE COUNT SIZE PREFETCH
 *
 * produce: a durable classic queue, persistent messages (delivery_mode 2), one basic.publish
 * per message. BATCH 1: no confirms; the phase ends when a passive queue.declare reports COUNT
 * messages in the queue. BATCH > 1: AMQP transactions, tx.commit after every BATCH messages
 * (RabbitMQ answers commit-ok once they are on disk); the phase ends at the last commit-ok.
 * consume: basic.qos PREFETCH, basic.consume with automatic acknowledgement, until COUNT.
 *
 * Prints "start" when the clock starts, then one line of JSON: seconds, messages, the
 * client's CPU seconds, and "marks" (seconds since start after every COUNT/50 messages).
 */
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define MARKS 50

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static void die(const char *what) {
    fprintf(stderr, "paper_rabbitmq: %s\n", what);
    exit(1);
}

static void check_rpc(amqp_connection_state_t conn, const char *what) {
    amqp_rpc_reply_t reply = amqp_get_rpc_reply(conn);
    if (reply.reply_type != AMQP_RESPONSE_NORMAL) {
        fprintf(stderr, "paper_rabbitmq: %s failed (reply type %d, library error %s)\n", what,
                reply.reply_type, amqp_error_string2(reply.library_error));
        exit(1);
    }
}

static void report(double start, double cpu_start, long count, double *marks, int nmarks) {
    double end = now();
    printf("{\"seconds\": %.6f, \"messages\": %ld, \"client_cpu_s\": %.3f, \"marks\": [",
           end - start, count, cpu() - cpu_start);
    for (int i = 0; i < nmarks; i++) printf("%s%.6f", i ? ", " : "", marks[i]);
    printf("]}\n");
    fflush(stdout);
}

static amqp_connection_state_t open_channel(const char *host, int port) {
    amqp_connection_state_t conn = amqp_new_connection();
    amqp_socket_t *socket = amqp_tcp_socket_new(conn);
    if (!socket) die("cannot create a socket");
    if (amqp_socket_open(socket, host, port) != AMQP_STATUS_OK) die("cannot connect");
    amqp_rpc_reply_t login = amqp_login(conn, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN,
                                        "guest", "guest");
    if (login.reply_type != AMQP_RESPONSE_NORMAL) die("login refused");
    amqp_channel_open(conn, 1);
    check_rpc(conn, "channel.open");
    return conn;
}

static uint32_t declare(amqp_connection_state_t conn, const char *queue, int passive) {
    amqp_queue_declare_ok_t *ok = amqp_queue_declare(
        conn, 1, amqp_cstring_bytes(queue), passive, 1 /* durable */, 0, 0, amqp_empty_table);
    check_rpc(conn, "queue.declare");
    return ok->message_count;
}

static int produce(amqp_connection_state_t conn, const char *queue, long count, int size,
                   int batch) {
    char *body = malloc(size);
    for (int i = 0; i < size; i++) body[i] = (char)(rand() & 0xff);
    amqp_bytes_t message = {size, body};
    amqp_basic_properties_t props;
    props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG;
    props.delivery_mode = 2; /* persistent */
    amqp_bytes_t routing_key = amqp_cstring_bytes(queue);
    declare(conn, queue, 0);
    if (batch > 1) {
        amqp_tx_select(conn, 1);
        check_rpc(conn, "tx.select");
    }
    long step = count / MARKS > 0 ? count / MARKS : 1;
    double marks[MARKS + 1];
    int nmarks = 0;
    printf("start\n");
    fflush(stdout);
    double cpu_start = cpu(), start = now();
    for (long i = 0; i < count; i++) {
        if (amqp_basic_publish(conn, 1, amqp_empty_bytes, routing_key, 0, 0, &props, message) !=
            AMQP_STATUS_OK)
            die("basic.publish failed");
        if (batch > 1 && ((i + 1) % batch == 0 || i + 1 == count)) {
            amqp_tx_commit(conn, 1);
            check_rpc(conn, "tx.commit");
        }
        if ((i + 1) % step == 0 && nmarks <= MARKS) marks[nmarks++] = now() - start;
    }
    if (batch == 1) {
        while (declare(conn, queue, 1) < (uint32_t)count) usleep(1000);
    }
    report(start, cpu_start, count, marks, nmarks);
    free(body);
    return 0;
}

static int consume(amqp_connection_state_t conn, const char *queue, long count, int prefetch,
                   int size) {
    amqp_basic_qos(conn, 1, 0, prefetch, 0);
    check_rpc(conn, "basic.qos");
    long step = count / MARKS > 0 ? count / MARKS : 1;
    double marks[MARKS + 1];
    int nmarks = 0;
    long received = 0, bytes = 0;
    printf("start\n");
    fflush(stdout);
    double cpu_start = cpu(), start = now();
    amqp_basic_consume(conn, 1, amqp_cstring_bytes(queue), amqp_empty_bytes, 0, 1 /* no_ack */,
                       0, amqp_empty_table);
    check_rpc(conn, "basic.consume");
    struct timeval timeout = {30, 0};
    while (received < count) {
        amqp_envelope_t envelope;
        amqp_maybe_release_buffers(conn);
        amqp_rpc_reply_t reply = amqp_consume_message(conn, &envelope, &timeout, 0);
        if (reply.reply_type != AMQP_RESPONSE_NORMAL) die("no message for 30 s");
        bytes += envelope.message.body.len;
        amqp_destroy_envelope(&envelope);
        received++;
        if (received % step == 0 && nmarks <= MARKS) marks[nmarks++] = now() - start;
    }
    if (bytes != count * (long)size) die("received bytes do not add up to COUNT * SIZE");
    report(start, cpu_start, received, marks, nmarks);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 8) {
        fprintf(stderr,
                "usage: paper_rabbitmq produce HOST PORT QUEUE COUNT SIZE BATCH\n"
                "       paper_rabbitmq consume HOST PORT QUEUE COUNT SIZE PREFETCH\n");
        return 2;
    }
    const char *host = argv[2], *queue = argv[4];
    int port = atoi(argv[3]), size = atoi(argv[6]), last = atoi(argv[7]);
    long count = atol(argv[5]);
    amqp_connection_state_t conn = open_channel(host, port);
    int rc = 2;
    if (strcmp(argv[1], "produce") == 0)
        rc = produce(conn, queue, count, size, last);
    else if (strcmp(argv[1], "consume") == 0)
        rc = consume(conn, queue, count, last, size);
    else
        die("the first argument is produce or consume");
    amqp_channel_close(conn, 1, AMQP_REPLY_SUCCESS);
    amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(conn);
    return rc;
}
