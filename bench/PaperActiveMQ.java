/* The ActiveMQ side of bench/paper.py: one producer or one consumer with ActiveMQ's JMS client
 * (the Debian package's jars), compiled by paper.py with javac.
 *
 *   java PaperActiveMQ produce BROKER_URL QUEUE COUNT SIZE BATCH
 *   java PaperActiveMQ consume BROKER_URL QUEUE COUNT SIZE PREFETCH
 *
 * produce: persistent BytesMessages to a queue. BATCH 1: asynchronous sends (useAsyncSend),
 * the last one synchronous, so the phase ends when the broker has answered it. BATCH > 1: a
 * transacted session, commit after every BATCH messages (synchronous); the phase ends at the
 * last commit. consume: prefetch PREFETCH, AUTO_ACKNOWLEDGE, receive() until COUNT.
 *
 * Prints "start" when the clock starts, then one line of JSON: seconds, messages, the JVM's
 * CPU seconds, and "marks" (seconds since start after every COUNT/50 messages).
 */
import java.lang.management.ManagementFactory;
import java.util.Random;
import javax.jms.BytesMessage;
import javax.jms.DeliveryMode;
import javax.jms.JMSException;
import javax.jms.Message;
import javax.jms.MessageConsumer;
import javax.jms.MessageProducer;
import javax.jms.Queue;
import javax.jms.Session;
import org.apache.activemq.ActiveMQConnection;
import org.apache.activemq.ActiveMQConnectionFactory;

public class PaperActiveMQ {
    private static final int MARKS = 50;

    private static double cpu() {
        return ((com.sun.management.OperatingSystemMXBean)
                ManagementFactory.getOperatingSystemMXBean()).getProcessCpuTime() / 1e9;
    }

    private static void report(long start, double cpuStart, long count, double[] marks, int n) {
        double seconds = (System.nanoTime() - start) / 1e9;
        StringBuilder out = new StringBuilder();
        out.append(String.format("{\"seconds\": %.6f, \"messages\": %d, \"client_cpu_s\": %.3f, "
                + "\"marks\": [", seconds, count, cpu() - cpuStart));
        for (int i = 0; i < n; i++) {
            out.append(i > 0 ? ", " : "").append(String.format("%.6f", marks[i]));
        }
        System.out.println(out.append("]}"));
        System.out.flush();
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 6) {
            System.err.println("usage: PaperActiveMQ produce|consume BROKER_URL QUEUE COUNT SIZE "
                    + "BATCH|PREFETCH");
            System.exit(2);
        }
        String url = args[1];
        long count = Long.parseLong(args[3]);
        int size = Integer.parseInt(args[4]);
        int last = Integer.parseInt(args[5]);
        ActiveMQConnection connection =
                (ActiveMQConnection) new ActiveMQConnectionFactory(url).createConnection();
        connection.start();
        try {
            if (args[0].equals("produce")) {
                produce(connection, args[2], count, size, last);
            } else if (args[0].equals("consume")) {
                consume(connection, args[2], count, size, last);
            } else {
                System.err.println("the first argument is produce or consume");
                System.exit(2);
            }
        } finally {
            connection.close();
        }
    }

    private static void produce(ActiveMQConnection connection, String name, long count, int size,
                                int batch) throws JMSException {
        boolean transacted = batch > 1;
        Session session = connection.createSession(
                transacted, transacted ? Session.SESSION_TRANSACTED : Session.AUTO_ACKNOWLEDGE);
        Queue queue = session.createQueue(name);
        MessageProducer producer = session.createProducer(queue);
        producer.setDeliveryMode(DeliveryMode.PERSISTENT);
        byte[] body = new byte[size];
        new Random(7).nextBytes(body);
        connection.setUseAsyncSend(!transacted);
        long step = Math.max(1, count / MARKS);
        double[] marks = new double[MARKS + 1];
        int n = 0;
        System.out.println("start");
        System.out.flush();
        double cpuStart = cpu();
        long start = System.nanoTime();
        for (long i = 0; i < count; i++) {
            BytesMessage message = session.createBytesMessage();
            message.writeBytes(body);
            if (!transacted && i + 1 == count) {
                connection.setUseAsyncSend(false);  // the last send waits for the broker
            }
            producer.send(message);
            if (transacted && ((i + 1) % batch == 0 || i + 1 == count)) {
                session.commit();
            }
            if ((i + 1) % step == 0 && n <= MARKS) {
                marks[n++] = (System.nanoTime() - start) / 1e9;
            }
        }
        report(start, cpuStart, count, marks, n);
        session.close();
    }

    private static void consume(ActiveMQConnection connection, String name, long count, int size,
                                int prefetch) throws JMSException {
        connection.getPrefetchPolicy().setQueuePrefetch(prefetch);
        Session session = connection.createSession(false, Session.AUTO_ACKNOWLEDGE);
        Queue queue = session.createQueue(name);
        long step = Math.max(1, count / MARKS);
        double[] marks = new double[MARKS + 1];
        int n = 0;
        long received = 0;
        long bytes = 0;
        System.out.println("start");
        System.out.flush();
        double cpuStart = cpu();
        long start = System.nanoTime();
        MessageConsumer consumer = session.createConsumer(queue);
        while (received < count) {
            Message message = consumer.receive(30000);
            if (message == null) {
                System.err.println("no message for 30 s after " + received);
                System.exit(1);
            }
            bytes += ((BytesMessage) message).getBodyLength();
            received++;
            if (received % step == 0 && n <= MARKS) {
                marks[n++] = (System.nanoTime() - start) / 1e9;
            }
        }
        if (bytes != count * size) {
            System.err.println("received bytes do not add up to COUNT * SIZE");
            System.exit(1);
        }
        report(start, cpuStart, received, marks, n);
        consumer.close();
        session.close();
    }
}
