/* test_log.c - the JSON form of a log event (log_json): fields, quoted
 * values and their escapes, the session's null, free text, what does not
 * fit; each output is checked as a whole string. */
#include <string.h>

#include "log.h"
#include "test.h"

static void
json_is(const char *sid, const char *body, const char *want)
{
	char out[1024];
	size_t n =
	    log_json(out, sizeof(out), "2026-01-02T03:04:05Z", "info", sid, body, strlen(body));

	CHECK_MSG(n == strlen(want), "length %zu for %s", n, body);
	CHECK_STR(n > 0 ? out : "", want);
}

int
main(void)
{
	enum log_format f;

	json_is("abc", "smtp.message qid=1f result=accept size=12",
	    "{\"ts\":\"2026-01-02T03:04:05Z\",\"level\":\"info\",\"session\":\"abc\","
	    "\"event\":\"smtp.message\",\"qid\":\"1f\",\"result\":\"accept\",\"size\":\"12\"}");
	/* No session: null. A quoted value with log_escape()'s escapes: \" \\
	 * \n stay JSON escapes; \xHH stays visible as text. */
	json_is(NULL, "smtp.bad_command line=\"a \\\"b\\\" c\\\\d\\ne\\xc3\" next=1",
	    "{\"ts\":\"2026-01-02T03:04:05Z\",\"level\":\"info\",\"session\":null,"
	    "\"event\":\"smtp.bad_command\",\"line\":\"a \\\"b\\\" "
	    "c\\\\d\\ne\\\\xc3\",\"next\":\"1\"}");
	/* What is not k=v goes whole into msg. */
	json_is(NULL, "fatal cannot bind: Address in use",
	    "{\"ts\":\"2026-01-02T03:04:05Z\",\"level\":\"info\",\"session\":null,"
	    "\"event\":\"fatal\",\"msg\":\"cannot bind: Address in use\"}");
	/* An event alone; an empty value; a quote inside a bare token and a
	 * raw 8-bit byte (never from log_escape) still make valid JSON. */
	json_is("s", "server.ready",
	    "{\"ts\":\"2026-01-02T03:04:05Z\",\"level\":\"info\","
	    "\"session\":\"s\",\"event\":\"server.ready\"}");
	json_is("s", "e a= b=x\"y c=\xff",
	    "{\"ts\":\"2026-01-02T03:04:05Z\",\"level\":\"info\","
	    "\"session\":\"s\",\"event\":\"e\",\"a\":\"\",\"b\":\"x\\\"y\",\"c\":\"\\u00ff\"}");
	/* An unterminated quote ends with the line. */
	json_is("s", "e k=\"open",
	    "{\"ts\":\"2026-01-02T03:04:05Z\",\"level\":\"info\","
	    "\"session\":\"s\",\"event\":\"e\",\"k\":\"open\"}");
	/* Too small a buffer: 0, nothing half-written claimed. */
	{
		char out[80];
		CHECK(log_json(out, sizeof(out), "t", "info", "s", "e k=v", 5) > 0);
		CHECK(log_json(out, 20, "t", "info", "s", "e k=v", 5) == 0);
	}
	CHECK(log_format_parse("json", &f) == 0 && f == LOG_FORMAT_JSON);
	CHECK(log_format_parse("text", &f) == 0 && f == LOG_FORMAT_TEXT);
	CHECK(log_format_parse("xml", &f) == -1);
	return test_done("test_log");
}
