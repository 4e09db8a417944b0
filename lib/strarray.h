/* Growable arrays of owned C strings. */
/* Columba is free software; see COPYING for the licence. */

#ifndef COLUMBA_LIB_STRARRAY_H
#define COLUMBA_LIB_STRARRAY_H

/* The array owns every string in data[0..count-1]; data[count] is NULL
 * whenever data is non-NULL.  An all-zero struct is a valid empty array. */
typedef struct strarray {
    int count;
    int alloc;
    char **data;
} strarray_t;

#define STRARRAY_INITIALIZER { 0, 0, NULL }

/* Heap-allocated empty array; free with strarray_free(). */
strarray_t *strarray_new(void);
/* Free all strings and the array itself; NULL accepted; clears *sap. */
void strarray_free(strarray_t **sap);
/* Free all strings, leaving an empty embedded array. */
void strarray_fini(strarray_t *sa);
/* Remove all strings, keeping the allocation. */
void strarray_truncate(strarray_t *sa, int count);

/* Append a copy of s; returns its index. */
int strarray_append(strarray_t *sa, const char *s);
/* Append s, taking ownership of it (malloc'd); returns its index. */
int strarray_appendm(strarray_t *sa, char *s);
/* Append a copy unless an equal string is present; returns its index. */
int strarray_add(strarray_t *sa, const char *s);
/* Insert a copy at index idx (clamped to [0,count]). */
void strarray_insert(strarray_t *sa, int idx, const char *s);
/* Replace the string at idx (must exist) with a copy of s. */
void strarray_set(strarray_t *sa, int idx, const char *s);

/* The string at idx, or NULL when out of range (negative counts from the
 * end: -1 is the last). */
const char *strarray_nth(const strarray_t *sa, int idx);
/* Remove and return the string at idx (caller frees), NULL if none. */
char *strarray_remove(strarray_t *sa, int idx);
/* Remove every string equal to s; returns how many were removed. */
int strarray_remove_all(strarray_t *sa, const char *s);

/* Index of the first string equal to s at or after `start`, or -1. */
int strarray_find(const strarray_t *sa, const char *s, int start);
/* Same, comparing ASCII case-insensitively. */
int strarray_find_case(const strarray_t *sa, const char *s, int start);

/* Sort with strcmp (or the given comparison of two char * elements). */
void strarray_sort(strarray_t *sa, int (*cmp)(const void *, const void *));
/* After sorting, drop adjacent duplicates. */
void strarray_uniq(strarray_t *sa);

/* Split s at any of the bytes in `sep`; empty fields are dropped when
 * `skip_empty` is set.  Returns a new array (caller frees). */
strarray_t *strarray_split(const char *s, const char *sep, int skip_empty);
/* Join with sep; returns a malloc'd string ("" for an empty array). */
char *strarray_join(const strarray_t *sa, const char *sep);

/* Copy of the whole array (caller frees). */
strarray_t *strarray_dup(const strarray_t *sa);

#endif /* COLUMBA_LIB_STRARRAY_H */
