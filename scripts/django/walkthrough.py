"""A Django walkthrough against tiox, run by scripts/django-walkthrough.

An app with a foreign key, a many-to-many, a JSON field and an index is
migrated (makemigrations + migrate, as a project would), then queried with
joins, annotations, a window function and JSON lookups. Every answer is
checked; the first wrong one stops the run with a non-zero exit.

Django's MySQL backend runs on PyMySQL (installed as MySQLdb), over MySQL
TLS with the server certificate verified against the CA given.
Environment: TIOX_PORT, TIOX_PW, TIOX_CA, WALK_DIR (a scratch directory).
"""

import os
import sys

import pymysql

pymysql.install_as_MySQLdb()

import django  # noqa: E402
from django.conf import settings  # noqa: E402

WALK_DIR = os.environ["WALK_DIR"]
APP_DIR = os.path.join(WALK_DIR, "shop")
os.makedirs(os.path.join(APP_DIR, "migrations"), exist_ok=True)
for name in ("__init__.py", os.path.join("migrations", "__init__.py")):
    open(os.path.join(APP_DIR, name), "a").close()
with open(os.path.join(APP_DIR, "models.py"), "w") as f:
    f.write(
        '''
from django.db import models


class Author(models.Model):
    name = models.CharField(max_length=50, unique=True)


class Tag(models.Model):
    label = models.CharField(max_length=20)


class Book(models.Model):
    title = models.CharField(max_length=100, db_index=True)
    author = models.ForeignKey(Author, on_delete=models.CASCADE, related_name="books")
    tags = models.ManyToManyField(Tag, related_name="books")
    price = models.DecimalField(max_digits=8, decimal_places=2)
    meta = models.JSONField(default=dict)

    class Meta:
        indexes = [models.Index(fields=["author", "price"], name="book_author_price")]
'''
    )
sys.path.insert(0, WALK_DIR)

settings.configure(
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "shop"],
    DATABASES={
        "default": {
            "ENGINE": "django.db.backends.mysql",
            "NAME": "walk",
            "USER": "root",
            "PASSWORD": os.environ.get("TIOX_PW", ""),
            "HOST": "127.0.0.1",
            "PORT": os.environ["TIOX_PORT"],
            "OPTIONS": {"ssl": {"ca": os.environ["TIOX_CA"]}, "charset": "utf8mb4"},
        }
    },
    USE_TZ=False,
    DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
)
django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.db.models import Count, F, Q, Sum, Window  # noqa: E402
from django.db.models.functions import RowNumber  # noqa: E402

step = 0


def check(what, got, want):
    global step
    step += 1
    if got != want:
        print(f"FAIL {step}. {what}: got {got!r}, want {want!r}")
        sys.exit(1)
    print(f"ok {step}. {what}")


call_command("makemigrations", "shop", verbosity=0)
call_command("migrate", verbosity=0)
with connection.cursor() as c:
    c.execute("SHOW CREATE TABLE shop_book")
    ddl = c.fetchone()[1]
check("migrate made the foreign key", "FOREIGN KEY (`author_id`) REFERENCES `shop_author` (`id`)" in ddl, True)
check("migrate made the composite index", "KEY `book_author_price` (`author_id`,`price`)" in ddl, True)
with connection.cursor() as c:
    c.execute("SHOW TABLES")
    tables = sorted(r[0] for r in c.fetchall())
check("tables", [t for t in tables if t.startswith("shop_")], ["shop_author", "shop_book", "shop_book_tags", "shop_tag"])

from shop.models import Author, Book, Tag  # noqa: E402

ann = Author.objects.create(name="Ann")
bob = Author.objects.create(name="Bob")
py, db = Tag.objects.create(label="python"), Tag.objects.create(label="db")
b1 = Book.objects.create(title="SQL", author=ann, price="10.50", meta={"color": "red", "pages": 120})
b2 = Book.objects.create(title="Raft", author=ann, price="30.00", meta={"color": "blue", "pages": 300, "tags": ["x"]})
b3 = Book.objects.create(title="Rust", author=bob, price="20.25", meta={"color": "red"})
b1.tags.add(py, db)
b3.tags.add(py)

check("join through the foreign key", sorted(Book.objects.filter(author__name="Ann").values_list("title", flat=True)), ["Raft", "SQL"])
check("select_related", [(b.title, b.author.name) for b in Book.objects.select_related("author").order_by("title")], [("Raft", "Ann"), ("Rust", "Bob"), ("SQL", "Ann")])
check("many-to-many", sorted(Tag.objects.get(label="python").books.values_list("title", flat=True)), ["Rust", "SQL"])
check(
    "annotate Count and Sum",
    list(Author.objects.annotate(n=Count("books"), total=Sum("books__price")).order_by("name").values_list("name", "n", "total")),
    [("Ann", 2, __import__("decimal").Decimal("40.50")), ("Bob", 1, __import__("decimal").Decimal("20.25"))],
)
check("count over the m2m join", Tag.objects.annotate(n=Count("books")).get(label="python").n, 2)
check(
    "window function",
    list(
        Book.objects.annotate(rank=Window(RowNumber(), partition_by=[F("author")], order_by=F("price").desc()))
        .order_by("author__name", "rank")
        .values_list("title", "rank")
    ),
    [("Raft", 1), ("SQL", 2), ("Rust", 1)],
)
check("JSON key lookup", sorted(Book.objects.filter(meta__color="red").values_list("title", flat=True)), ["Rust", "SQL"])
check("JSON numeric comparison", list(Book.objects.filter(meta__pages__gt=200).values_list("title", flat=True)), ["Raft"])
check("JSON has_key", sorted(Book.objects.filter(meta__has_key="pages").values_list("title", flat=True)), ["Raft", "SQL"])
check("JSON contains", list(Book.objects.filter(meta__contains={"tags": ["x"]}).values_list("title", flat=True)), ["Raft"])
check("JSON value round trip", Book.objects.get(title="Raft").meta, {"color": "blue", "pages": 300, "tags": ["x"]})
check("Q objects with OR", sorted(Book.objects.filter(Q(price__lt=15) | Q(title="Rust")).values_list("title", flat=True)), ["Rust", "SQL"])
Book.objects.filter(author=bob).update(price=F("price") + 1)
check("UPDATE with F()", str(Book.objects.get(title="Rust").price), "21.25")
ann.delete()
check("delete cascades through Django's collector", list(Book.objects.values_list("title", flat=True)), ["Rust"])
print(f"walkthrough passed: {step} checks")
